"""Typed settings shared by every service, read once from the environment at start-up.

Every variable carries the ``TOUCHPOINT_`` prefix (``TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS``,
``TOUCHPOINT_DATABASE_URL``, ...). Services subclass :class:`ServiceSettings` for their own options.
Tests build settings objects directly instead of mutating the environment.
"""

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHPOINT_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # Namespaces a deployment: prepended to every topic name and consumer group id, so deployments sharing a
    # Kafka cluster neither read each other's topics nor rebalance each other's groups. Empty in production so
    # public topic names stay fixed.
    topic_prefix: str = ""
    # The services' role: owns nothing, no BYPASSRLS, sees only the rows of the tenants in scope.
    database_url: SecretStr = SecretStr("postgresql://touchpoint_app:touchpoint_app@127.0.0.1:15432/touchpoint")
    # The owner role, for `touchpoint migrate` only (it creates the role of database_url if missing).
    migration_database_url: SecretStr | None = None
    db_pool_min: int = 1
    db_pool_max: int = 4
    default_tenant: str = "default"
    # Region assumed for phone numbers written without a country code (ISO 3166-1 alpha-2).
    default_phone_region: str = "DE"
    host: str = "127.0.0.1"
    port: int = 8000
    # Idle keep-alive connections are closed after this many seconds: longer than clients keep theirs (httpx 5 s,
    # load balancers 60 s, Go 90 s). A server that closes first races a client reusing the connection, and the
    # request then in flight fails with a connection reset instead of an answer.
    http_keep_alive_seconds: int = 120
    log_level: str = "INFO"
    # Batch consumption: records per poll and how long an empty poll waits.
    batch_max_records: int = 1000
    batch_timeout_ms: int = 20
    # How long a batch handed over from the consumer's buffer waits for what arrived since (shared/consumer.py).
    batch_top_up_ms: int = 3
    # A batch that took less waits out the rest of this before the next one is handed over (a full batch does
    # not): at moderate rates the next batch then gathers more records instead of paying a batch's fixed cost
    # (fetch, produce, commit, transactions) again for a few.
    batch_min_interval_ms: int = 20
    # How often each consumer tells the group coordinator it is alive; it learns of a rebalance only with the next
    # answer. Every consumer that joins (a service starts one per subscription, one after another) rebalances the
    # group, and the members already in it rejoin only once they have heard: at the client default of 3 s a
    # service with six subscriptions took 23 s to start, and every rebalance held up consumption as long.
    kafka_heartbeat_interval_ms: int = 250
    # Transient failures: attempts inside one delivery before the batch is handed back to Kafka.
    retry_attempts: int = 6
    retry_base_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    # Dead-letter ceiling (shared/deadletters.py): at most this share of the last `dead_letter_window` records
    # a subscription read may go to its dead-letter topic; the batch that would exceed it stops the service.
    dead_letter_max_share: float = 0.5
    dead_letter_window: int = 1000
    # Requests per second per API key (token bucket per process; a burst of api_rate_burst); 0 = no limit.
    api_rate_per_second: float = 500.0
    api_rate_burst: float = 1000.0
    # Garbage collector: young-generation threshold once the service has started (shared/gcpolicy.py);
    # 0 keeps the interpreter's default (700).
    gc_young_threshold: int = 20_000

    def group(self, group_id: str) -> str:
        """The consumer group id of ``group_id`` in this deployment's namespace."""
        return self.topic_prefix + group_id
