// Touchpoint agent console: one customer at a time, found by search or opened directly by a URL
// (?phone=, ?email=, ?q=, ?customer=). Reads the timeline service's APIs with the key the agent signed in with
// (kept in this tab's sessionStorage only). Everything from the server is inserted as text, never as HTML.
"use strict";

// Every message as [English, German]: one line per message keeps the two languages in step.
const LANGUAGES = ["en", "de"];
const MESSAGES = {
  "skip": ["Skip to content", "Zum Inhalt springen"],
  "language": ["Language", "Sprache"],
  "logout": ["Sign out", "Abmelden"],
  "search.label": ["Search customer", "Kunden suchen"],
  "search.button": ["Search", "Suchen"],
  "search.hint": ["Phone, e-mail, handle, contract number or name", "Telefon, E-Mail, Handle, Vertragsnummer oder Name"],
  "login.title": ["Sign in", "Anmelden"],
  "login.key": ["API key or agent token", "API-Schlüssel oder Agenten-Token"],
  "login.submit": ["Sign in", "Anmelden"],
  "login.invalid": ["This key was not accepted.", "Dieser Schlüssel wurde nicht akzeptiert."],
  "results.title": ["Customers found", "Gefundene Kunden"],
  "results.none": ["No customer found for “{q}”.", "Kein Kunde zu „{q}“ gefunden."],
  "identifiers.title": ["Identifiers", "Kennungen"],
  "consent.title": ["Consent", "Einwilligungen"],
  "consent.caption": ["Consent per purpose and channel", "Einwilligung je Zweck und Kanal"],
  "consent.purpose": ["Purpose", "Zweck"],
  "consent.channel": ["Channel", "Kanal"],
  "consent.state": ["State", "Status"],
  "consent.since": ["Since", "Seit"],
  "consent.none": ["No consent recorded.", "Keine Einwilligung erfasst."],
  "state.granted": ["granted", "erteilt"],
  "state.withdrawn": ["withdrawn", "widerrufen"],
  "state.expired": ["expired", "abgelaufen"],
  "timeline.title": ["Timeline", "Verlauf"],
  "timeline.more": ["Load more", "Mehr laden"],
  "timeline.empty": ["No entries.", "Keine Einträge."],
  "filter.channel": ["Channel", "Kanal"],
  "filter.kind": ["Kind", "Art"],
  "filter.all": ["All", "Alle"],
  "kind.interaction": ["Interaction", "Kontakt"],
  "kind.routing": ["Routing", "Routing"],
  "kind.notification": ["Notification", "Benachrichtigung"],
  "kind.feedback": ["Feedback", "Feedback"],
  "conversations.title": ["Open conversations", "Offene Gespräche"],
  "conversations.none": ["No open conversation.", "Kein offenes Gespräch."],
  "notifications.title": ["Notifications", "Benachrichtigungen"],
  "notifications.none": ["No notification.", "Keine Benachrichtigung."],
  "identity.title": ["Identity", "Identität"],
  "identity.explain": ["Why do these identifiers belong to this person?", "Warum gehören diese Kennungen zu dieser Person?"],
  "identity.linked": ["linked by {source} / {event} on {at}", "verknüpft durch {source} / {event} am {at}"],
  "identity.merge": ["merged {ids} ({rule}) on {at}", "{ids} zusammengeführt ({rule}) am {at}"],
  "identity.refused": ["not linked: {rule} (event from {source}, {at})", "nicht verknüpft: {rule} (Ereignis von {source}, {at})"],
  "identity.linking": ["via {idents}", "über {idents}"],
  "identity.unavailable": ["Identity explanation unavailable ({reason}).", "Identitätserklärung nicht verfügbar ({reason})."],
  "split.open": ["Request a split", "Trennung beantragen"],
  "split.legend": ["Identifiers that belong to someone else", "Kennungen, die zu jemand anderem gehören"],
  "split.reason": ["Reason", "Begründung"],
  "split.submit": ["Send request", "Antrag senden"],
  "split.sent": ["Split requested ({id}).", "Trennung beantragt ({id})."],
  "split.failed": ["Split request failed ({reason}).", "Antrag fehlgeschlagen ({reason})."],
  "fact.id": ["Customer id", "Kunden-ID"],
  "fact.language": ["Language", "Sprache"],
  "fact.time_zone": ["Time zone", "Zeitzone"],
  "fact.tier": ["Tier", "Stufe"],
  "fact.nps": ["Last NPS", "Letzter NPS"],
  "fact.csat": ["Last CSAT", "Letzter CSAT"],
  "fact.ces": ["Last CES", "Letzter CES"],
  "fact.contacts": ["Contacts", "Kontakte"],
  "fact.last_contact": ["Last contact", "Letzter Kontakt"],
  "fact.preferred": ["Preferred channel", "Bevorzugter Kanal"],
  "fact.merged": ["Merged ids", "Zusammengeführte IDs"],
  "unknown": ["—", "—"],
  "unnamed": ["Customer {id}", "Kunde {id}"],
  "conv.status": ["{status}", "{status}"],
  "code.queued": ["queued", "wartet"],
  "code.offered": ["offered", "angeboten"],
  "code.assigned": ["assigned", "zugewiesen"],
  "code.waiting_on_customer": ["waiting on the customer", "wartet auf Kunden"],
  "code.resolved": ["resolved", "gelöst"],
  "code.first_response": ["first response", "Erstreaktion"],
  "code.next_response": ["next response", "Folgereaktion"],
  "code.resolution": ["resolution", "Lösung"],
  "code.scheduled": ["scheduled", "geplant"],
  "code.held": ["held", "zurückgehalten"],
  "code.sent": ["sent", "gesendet"],
  "code.delivered": ["delivered", "zugestellt"],
  "code.failed": ["failed", "fehlgeschlagen"],
  "code.suppressed": ["suppressed", "unterdrückt"],
  "code.follow_up_answered": ["follow-up answered", "Rückfrage beantwortet"],
  "conv.position": ["position {position} in {queue}", "Position {position} in {queue}"],
  "conv.eta": ["ETA {eta}", "voraussichtlich {eta}"],
  "conv.agent": ["agent {agent}", "Agent {agent}"],
  "conv.live_error": ["live state unavailable ({reason})", "Live-Status nicht verfügbar ({reason})"],
  "sla.left": ["{metric}: {time} left", "{metric}: noch {time}"],
  "sla.overdue": ["{metric}: overdue by {time}", "{metric}: überfällig seit {time}"],
  "sla.paused": ["{metric}: paused ({time} left)", "{metric}: pausiert (noch {time})"],
  "sla.met": ["{metric}: met", "{metric}: eingehalten"],
  "sla.missed": ["{metric}: missed", "{metric}: verfehlt"],
  "notif.reason": ["reason: {reason}", "Grund: {reason}"],
  "notif.release": ["until {at}", "bis {at}"],
  "dir.inbound": ["inbound", "eingehend"],
  "dir.outbound": ["outbound", "ausgehend"],
  "live.new": ["New entry: {summary}", "Neuer Eintrag: {summary}"],
  "loading": ["Loading…", "Lädt…"],
  "opened": ["Customer {name} opened.", "Kunde {name} geöffnet."],
  "error": ["Request failed ({reason}).", "Anfrage fehlgeschlagen ({reason})."],
};

const CHANNELS = ["email", "phone", "sms", "whatsapp", "chat", "facebook", "instagram", "twitter", "app", "web",
                  "store", "event", "community", "letter", "other"];
const ICONS = { email: "✉", phone: "☎", sms: "✆", whatsapp: "☏", chat: "✎", facebook: "ⓕ", instagram: "◉",
                twitter: "𝕏", app: "▣", web: "◎", store: "⌂", event: "★", community: "☺", letter: "✍", other: "•" };
const KINDS = ["interaction", "routing", "notification", "feedback"];
const PAGE = 50;

const state = {
  key: sessionStorage.getItem("touchpoint.key") || "",
  lang: localStorage.getItem("touchpoint.lang") || (navigator.language || "en").slice(0, 2),
  customer: null, cursor: null, loading: false, entries: new Map(), stream: null, generation: 0,
  refreshTimer: null,
};
const langParam = new URLSearchParams(location.search).get("lang");
if (langParam) state.lang = langParam;
if (!LANGUAGES.includes(state.lang)) state.lang = "en";

const $ = (id) => document.getElementById(id);

// A code from the server (status, SLA metric, decision) in the UI language; an unknown code as it is.
function code(value) {
  return value && MESSAGES[`code.${value}`] ? t(`code.${value}`) : value;
}

function t(key, vars = {}) {
  const pair = MESSAGES[key];
  const text = pair ? pair[LANGUAGES.indexOf(state.lang)] || pair[0] : key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] === undefined || vars[name] === null ? "" : String(vars[name])));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function fmtTime(iso) {
  if (!iso) return t("unknown");
  return new Date(iso).toLocaleString(state.lang === "de" ? "de-DE" : "en-GB",
    { dateStyle: "medium", timeStyle: "short" });
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(Math.abs(seconds)));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(r).padStart(2, "0")}`;
}

function say(message) { $("status").textContent = message; }

class ApiError extends Error {
  constructor(status, reason) { super(reason); this.status = status; this.reason = reason; }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { "Authorization": `Bearer ${state.key}`, "Content-Type": "application/json" },
  });
  if (response.status === 401) { signOut(); throw new ApiError(401, "unauthorised"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, (body.error && body.error.reason) || String(response.status));
  return body;
}

// ---- language -------------------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang;
  $("lang").value = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  fillFilters();
  if (state.customer) { renderHeader(state.customer); rerenderEntries(); }
}

function fillFilters() {
  const channel = $("filter-channel"), kind = $("filter-kind");
  const keepChannel = channel.value, keepKind = kind.value;
  channel.replaceChildren(el("option", { value: "", text: t("filter.all") }),
    ...CHANNELS.map((c) => el("option", { value: c, text: c })));
  kind.replaceChildren(el("option", { value: "", text: t("filter.all") }),
    ...KINDS.map((k) => el("option", { value: k, text: t(`kind.${k}`) })));
  channel.value = keepChannel; kind.value = keepKind;
}

// ---- sign-in and search ---------------------------------------------------------------------------------

function show(view) {
  $("login").hidden = view !== "login";
  $("results").hidden = view !== "results";
  $("customer").hidden = view !== "customer";
  $("search-form").hidden = view === "login";
  $("logout").hidden = view === "login";
}

function signOut() {
  sessionStorage.removeItem("touchpoint.key");
  state.key = ""; state.customer = null;
  stopStream();
  show("login");
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  try {
    await api("/v1/console/search?q=-");
  } catch (err) {
    $("login-error").textContent = t("login.invalid");
    return;
  }
  sessionStorage.setItem("touchpoint.key", state.key);
  $("api-key").value = ""; $("login-error").textContent = "";
  show("results");
  $("result-list").replaceChildren();
  await route();
  if (!state.customer) $("search-input").focus();
}

async function search(query) {
  say(t("loading"));
  const { results } = await api(`/v1/console/search?q=${encodeURIComponent(query)}`);
  if (results.length === 1) return openCustomer(results[0].customer_id);
  show("results");
  say(results.length ? "" : t("results.none", { q: query }));
  $("result-list").replaceChildren(...results.map((r) => el("li", {},
    el("a", { href: `?customer=${encodeURIComponent(r.customer_id)}`, "data-customer": r.customer_id,
              text: r.display_name || t("unnamed", { id: r.customer_id }) }),
    " ", el("span", { class: "badge", text: r.matched }))));
  const first = $("result-list").querySelector("a");
  if (first) first.focus();
}

// Screen pop and deep links: ?customer=<id>, ?phone=, ?email=, or any identifier type, or ?q=.
async function route() {
  const params = new URLSearchParams(location.search);
  try {
    if (params.get("customer")) return await openCustomer(params.get("customer"));
    for (const [type, value] of params) {
      if (type === "q" || type === "lang") continue;
      const found = await api(`/v1/customers/lookup?type=${encodeURIComponent(type)}&value=${encodeURIComponent(value)}`)
        .catch((err) => (err.status === 404 ? null : Promise.reject(err)));
      if (found) return await openCustomer(found.customer_id);
      say(t("results.none", { q: value }));
      return;
    }
    if (params.get("q")) { $("search-input").value = params.get("q"); return await search(params.get("q")); }
  } catch (err) {
    say(t("error", { reason: err.reason || err.message }));
  }
}

// ---- the customer -----------------------------------------------------------------------------------------

async function openCustomer(customerId) {
  const generation = ++state.generation;
  stopStream();
  say(t("loading"));
  const started = performance.now();
  const [header, page] = await Promise.all([
    api(`/v1/console/customers/${encodeURIComponent(customerId)}`),
    api(timelineUrl(customerId, null)),
  ]);
  if (generation !== state.generation) return;
  state.customer = header;
  state.entries = new Map();
  state.cursor = page.next_cursor;
  show("customer");
  renderHeader(header);
  $("entries").replaceChildren();
  appendEntries(page.entries);
  const rendered = performance.now() - started;
  document.body.dataset.renderedMs = String(Math.round(rendered));
  document.body.dataset.renderedAt = String(Math.round(performance.now()));  // since navigation start
  document.body.dataset.customer = header.customer_id;
  history.replaceState(null, "", `?customer=${encodeURIComponent(header.customer_id)}`);
  $("identity").replaceChildren(); $("split-form").hidden = true; $("split-open").hidden = true;
  say(t("opened", { name: header.display_name || header.customer_id }));
  $("customer-name").focus();
  startStream(header.customer_id, generation);
}

function renderHeader(c) {
  $("customer-name").textContent = c.display_name || t("unnamed", { id: c.customer_id });
  $("customer-name").tabIndex = -1;
  const facts = [
    ["fact.id", c.customer_id], ["fact.language", c.language], ["fact.time_zone", c.time_zone],
    ["fact.tier", c.tier], ["fact.preferred", c.preferred_channel],
    ["fact.nps", scoreText(c.scores.nps)], ["fact.csat", scoreText(c.scores.csat)], ["fact.ces", scoreText(c.scores.ces)],
    ["fact.contacts", c.entry_count], ["fact.last_contact", fmtTime(c.last_contact_at)],
  ];
  if (c.merged_ids.length) facts.push(["fact.merged", c.merged_ids.join(", ")]);
  $("facts").replaceChildren(...facts.map(([key, value]) => el("div", { "data-fact": key.slice(5) },
    el("dt", { text: t(key) }), el("dd", { text: value === null || value === undefined ? t("unknown") : String(value) }))));
  $("identifiers").replaceChildren(...c.identifiers.map((i) => el("li", { "data-identifier": `${i.type}:${i.value}` },
    el("span", { class: "badge", text: i.type }), " ", i.value, " ",
    ...i.channels.map((ch) => el("span", { class: "badge", title: ch, text: `${ICONS[ch] || "•"} ${ch}` })))));
  const rows = c.consent.map((r) => el("tr", { "data-consent": `${r.purpose}/${r.channel}` },
    el("td", { text: r.purpose }), el("td", { text: r.channel }),
    el("td", { class: `state-${r.state}`, text: t(`state.${r.state}`) }), el("td", { text: fmtTime(r.at) })));
  $("consent").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "4", text: t("consent.none") }))]));
  renderConversations(c.conversations);
  renderNotifications(c.notifications);
}

function scoreText(score) { return score ? `${score.score} (${fmtTime(score.at)})` : null; }

function renderConversations(conversations) {
  const items = conversations.map((c) => {
    const live = c.live || {};
    const parts = [t("conv.status", { status: code(live.status || c.last_event.replace("routing.conversation_", "")) })];
    const queue = live.queue || c.queue;
    if (live.position || c.position) parts.push(t("conv.position", { position: live.position || c.position, queue }));
    if (live.eta_s !== undefined && live.eta_s !== null) parts.push(t("conv.eta", { eta: fmtDuration(live.eta_s) }));
    const agent = live.agent_id || c.agent_id;
    if (agent) parts.push(t("conv.agent", { agent }));
    if (c.live_error) parts.push(t("conv.live_error", { reason: c.live_error }));
    const clocks = (live.sla && live.sla.clocks) || {};
    return el("li", { "data-conversation": c.conversation_id },
      el("span", { class: "icon", "aria-hidden": "true", text: ICONS[c.channel] || "•" }), " ",
      el("strong", { text: c.conversation_id }), " ", el("span", { text: parts.join(" · ") }),
      el("ul", { class: "plain" }, ...Object.entries(clocks).map(([metric, clock]) =>
        el("li", { class: "clock", "data-metric": metric, "data-due": clock.due_at || "", "data-state": clock.state,
                   "data-left": clock.target_s !== undefined ? String(clock.target_s - (clock.consumed_s || 0)) : "" }))));
  });
  $("conversations").replaceChildren(...(items.length ? items : [el("li", { text: t("conversations.none") })]));
  tickClocks();
}

function tickClocks() {
  const now = Date.now();
  for (const node of document.querySelectorAll("#conversations .clock")) {
    const metric = code(node.dataset.metric);
    const stateName = node.dataset.state;
    const due = node.dataset.due ? Date.parse(node.dataset.due) : null;
    const left = due === null ? null : (due - now) / 1000;
    let text;
    if (stateName === "hit") text = t("sla.met", { metric });
    else if (stateName === "missed" || stateName === "missed_running") text = t("sla.missed", { metric });
    else if (stateName === "paused") text = t("sla.paused", { metric, time: fmtDuration(Number(node.dataset.left || 0)) });
    else if (left === null) text = `${metric}: ${stateName}`;
    else text = left >= 0 ? t("sla.left", { metric, time: fmtDuration(left) }) : t("sla.overdue", { metric, time: fmtDuration(left) });
    node.textContent = text;
    node.classList.toggle("overdue", left !== null && left < 0 && stateName === "running");
    node.classList.toggle("due-soon", left !== null && left >= 0 && left < 300 && stateName === "running");
  }
}

function renderNotifications(notifications) {
  const items = notifications.map((n) => el("li", { "data-notification": n.notification_id },
    el("span", { class: `badge decision-${n.decision}`, "data-decision": n.decision, text: code(n.decision) }), " ",
    el("span", { text: [n.trigger, n.purpose, n.channel].filter(Boolean).join(" · ") }), " ",
    n.reason ? el("span", { class: "reason", text: t("notif.reason", { reason: n.reason }) }) : null, " ",
    n.release_at ? el("span", { text: t("notif.release", { at: fmtTime(n.release_at) }) }) : null,
    el("div", { class: "meta", text: fmtTime(n.at) })));
  $("notifications").replaceChildren(...(items.length ? items : [el("li", { text: t("notifications.none") })]));
}

// ---- the timeline -------------------------------------------------------------------------------------------

function timelineUrl(customerId, cursor) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if ($("filter-channel").value) params.append("channel", $("filter-channel").value);
  if ($("filter-kind").value) params.append("kind", $("filter-kind").value);
  if (cursor) params.set("cursor", cursor);
  return `/v1/customers/${encodeURIComponent(customerId)}/timeline?${params}`;
}

function matchesFilters(entry) {
  const channel = $("filter-channel").value, kind = $("filter-kind").value;
  return (!channel || entry.channel === channel) && (!kind || entry.kind.split(".")[0] === kind);
}

function entrySummary(e) {
  const d = e.details || {};
  if (e.kind === "interaction") return e.subject || e.text || "";
  if (e.kind === "notification" || e.kind === "feedback") {
    return [d.event, d.trigger, d.reason, d.metric && `${d.metric} ${d.score ?? ""}`].filter(Boolean).join(" · ");
  }
  return [e.kind.replace("routing.", ""), d.queue, e.agent_id].filter(Boolean).join(" · ");
}

function entryNode(e) {
  const kindGroup = e.kind.split(".")[0];
  const channelName = e.channel || "other";
  const body = e.kind === "interaction" ? [e.subject, e.text].filter(Boolean).join("\n") : entrySummary(e);
  return el("li", { class: "entry", tabindex: "0", "data-entry": e.entry_id, "data-kind": kindGroup,
                    "data-channel": channelName, "aria-label": `${channelName}, ${t(`kind.${kindGroup}`)}, ${fmtTime(e.occurred_at)}` },
    el("span", { class: "icon", "aria-hidden": "true", title: channelName, text: ICONS[channelName] || "•" }),
    el("div", { class: "meta" },
      el("time", { datetime: e.occurred_at, text: fmtTime(e.occurred_at) }), " · ", channelName, " · ",
      t(`kind.${kindGroup}`), e.kind.includes(".") ? ` (${e.kind.split(".")[1]})` : "",
      e.direction ? ` · ${t(`dir.${e.direction}`)}` : "", e.agent_id ? ` · ${e.agent_id}` : ""),
    el("div", { class: "body", text: body }));
}

function appendEntries(entries) {
  const fresh = entries.filter((e) => !state.entries.has(e.entry_id));
  for (const e of fresh) state.entries.set(e.entry_id, e);
  $("entries").append(...fresh.map(entryNode));
  $("more").hidden = !state.cursor;
  $("entries-empty").hidden = $("entries").children.length > 0;
}

function rerenderEntries() {
  const shown = [...$("entries").children].map((node) => state.entries.get(node.dataset.entry));
  $("entries").replaceChildren(...shown.filter(Boolean).map(entryNode));
}

async function loadMore() {
  if (!state.customer || !state.cursor || state.loading) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const page = await api(timelineUrl(state.customer.customer_id, state.cursor));
    if (generation !== state.generation) return;
    state.cursor = page.next_cursor;
    appendEntries(page.entries);
  } finally {
    state.loading = false;
  }
}

async function reloadTimeline() {
  if (!state.customer) return;
  const generation = ++state.generation;
  const page = await api(timelineUrl(state.customer.customer_id, null));
  if (generation !== state.generation) return;
  state.entries = new Map(); state.cursor = page.next_cursor;
  $("entries").replaceChildren();
  appendEntries(page.entries);
  startStream(state.customer.customer_id, generation);
}

function prependLive(entry) {
  if (state.entries.has(entry.entry_id) || !matchesFilters(entry)) return;
  state.entries.set(entry.entry_id, entry);
  const node = entryNode(entry);
  node.classList.add("new");
  // Newest first: place it before the first entry that is older.
  const older = [...$("entries").children].find((n) => {
    const other = state.entries.get(n.dataset.entry);
    return other && other.occurred_at < entry.occurred_at;
  });
  $("entries").insertBefore(node, older || null);
  $("entries-empty").hidden = true;
  say(t("live.new", { summary: `${entry.channel} ${entrySummary(entry)}`.slice(0, 120) }));
}

// ---- live updates (server-sent events over fetch, so the key travels in a header, not in the URL) ----------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function startStream(customerId, generation) {
  stopStream();
  const controller = new AbortController();
  state.stream = controller;
  const run = async () => {
    const response = await fetch(`/v1/console/customers/${encodeURIComponent(customerId)}/live`,
      { headers: { "Authorization": `Bearer ${state.key}` }, signal: controller.signal });
    if (!response.ok) throw new ApiError(response.status, "live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end), generation);
        buffer = buffer.slice(end + 2);
      }
    }
  };
  run().catch(() => null).finally(() => {
    if (state.stream === controller && !controller.signal.aborted && generation === state.generation) {
      setTimeout(() => { if (state.stream === controller) startStream(customerId, generation); }, 2000);
    }
  });
}

function handleEvent(block, generation) {
  if (generation !== state.generation) return;
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (name === "entry") prependLive(JSON.parse(data));
  else if (name === "ready") catchUp(generation);
  else if (name === "changed") scheduleHeaderRefresh();
  else if (name === "merged") openCustomer(JSON.parse(data).customer_id);
}

// Entries stored between the first page and the stream's start are the page's: read the newest page again.
async function catchUp(generation) {
  const page = await api(timelineUrl(state.customer.customer_id, null));
  if (generation !== state.generation) return;
  for (const e of page.entries.slice().reverse()) prependLive(e);
}

function scheduleHeaderRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    if (!state.customer) return;
    const header = await api(`/v1/console/customers/${encodeURIComponent(state.customer.customer_id)}`).catch(() => null);
    if (header && state.customer && header.customer_id === state.customer.customer_id) {
      state.customer = header;
      renderHeader(header);
    }
  }, 300);
}

// ---- identity ---------------------------------------------------------------------------------------------

async function explainIdentity() {
  const box = $("identity");
  box.replaceChildren(el("p", { text: t("loading") }));
  let graph;
  try {
    graph = await api(`/v1/console/customers/${encodeURIComponent(state.customer.customer_id)}/identity`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", text: t("identity.unavailable", { reason: err.reason }) }));
    return;
  }
  const idents = graph.identifiers.map((i) => el("li", {},
    el("span", { class: "badge", text: i.type }), " ", i.value, " — ",
    t("identity.linked", { source: i.linked_by.source, event: i.linked_by.event_id, at: fmtTime(i.first_seen) })));
  const merges = graph.merges.map((m) => el("li", {},
    t("identity.merge", { ids: m.merged_ids.join(", "), rule: m.rule, at: fmtTime(m.merged_at) }), " ",
    t("identity.linking", { idents: (m.linking_identifiers || []).map((x) => (x.type ? `${x.type}:${x.value}` : String(x))).join(", ") })));
  const refused = (graph.refused || []).map((r) => el("li", {},
    el("span", { class: "badge", text: r.identifier.type }), " ", r.identifier.value, " — ",
    t("identity.refused", { rule: r.rule, source: r.event.source, at: fmtTime(r.at) })));
  box.replaceChildren(el("ul", { class: "plain", id: "identity-identifiers" }, ...idents),
    el("ul", { class: "plain", id: "identity-merges" }, ...merges),
    el("ul", { class: "plain", id: "identity-refused" }, ...refused));
  $("split-identifiers").replaceChildren(...graph.identifiers.map((i, n) => el("div", {},
    el("input", { type: "checkbox", id: `split-${n}`, value: JSON.stringify({ type: i.type, value: i.value }) }),
    el("label", { for: `split-${n}`, text: ` ${i.type}: ${i.value}` }))));
  $("split-open").hidden = false;
}

async function requestSplit(event) {
  event.preventDefault();
  const identifiers = [...$("split-identifiers").querySelectorAll("input:checked")].map((x) => JSON.parse(x.value));
  if (!identifiers.length) return;
  try {
    const answer = await api(`/v1/console/customers/${encodeURIComponent(state.customer.customer_id)}/split-requests`,
      { method: "POST", body: JSON.stringify({ identifiers, reason: $("split-reason").value }) });
    $("split-result").textContent = t("split.sent", { id: answer.request_id });
  } catch (err) {
    $("split-result").textContent = t("split.failed", { reason: err.reason });
  }
}

// ---- wiring ---------------------------------------------------------------------------------------------

function moveFocus(event) {
  const entry = event.target.closest && event.target.closest(".entry");
  if (!entry || !["ArrowDown", "ArrowUp"].includes(event.key)) return;
  const next = event.key === "ArrowDown" ? entry.nextElementSibling : entry.previousElementSibling;
  if (next) { next.focus(); event.preventDefault(); }
  if (!next && event.key === "ArrowDown") loadMore();
}

function init() {
  $("lang").addEventListener("change", () => {
    state.lang = $("lang").value;
    localStorage.setItem("touchpoint.lang", state.lang);
    applyLanguage();
  });
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("search-input").value.trim();
    if (q) search(q).catch((err) => say(t("error", { reason: err.reason || err.message })));
  });
  $("result-list").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-customer]");
    if (!link) return;
    event.preventDefault();
    openCustomer(link.dataset.customer).catch((err) => say(t("error", { reason: err.reason || err.message })));
  });
  $("filter-channel").addEventListener("change", () => reloadTimeline());
  $("filter-kind").addEventListener("change", () => reloadTimeline());
  $("more").addEventListener("click", () => loadMore());
  $("explain").addEventListener("click", () => explainIdentity());
  $("split-open").addEventListener("click", () => { $("split-form").hidden = false; $("split-reason").focus(); });
  $("split-form").addEventListener("submit", requestSplit);
  $("entries").addEventListener("keydown", moveFocus);
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing && !$("search-form").hidden) { event.preventDefault(); $("search-input").focus(); }
  });
  new IntersectionObserver((seen) => { if (seen.some((s) => s.isIntersecting)) loadMore(); })
    .observe($("sentinel"));
  setInterval(tickClocks, 1000);
  applyLanguage();
  if (!state.key) { show("login"); $("api-key").focus(); return; }
  show("results");
  route().then(() => { if (!state.customer) $("search-input").focus(); });
}

document.addEventListener("DOMContentLoaded", init);
