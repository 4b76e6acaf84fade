"""Channel connectors: provider webhooks, inbound email and web chat turned into
``touchpoint.interaction.occurred.v1`` events on the inbound topic.

One module per provider (``whatsapp``, ``messenger`` for Messenger and Instagram, ``twilio``, ``x``,
``generic`` for Standard Webhooks, ``email``, ``webchat``) behind the interface in ``base``; ``intake`` holds
the use cases, ``config`` the per-tenant credentials, ``repository`` the SQL. Nothing here imports a web
framework or an SMTP server. See docs/connectors.md.
"""
