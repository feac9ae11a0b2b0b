"""The live page itself: one self-contained HTML document (inline CSS and JS)."""

from __future__ import annotations

import html
from typing import Final


def render_page(stream_id: str) -> str:
    """The page, with the (validated) stream id escaped into it."""
    return PAGE.replace("__STREAM_ID__", html.escape(stream_id, quote=True))


PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="color-scheme" content="dark light">
<title>Trending in __STREAM_ID__</title>
<style>
  :root { --bg: #111318; --fg: #f4f5f7; --muted: #9aa3b2; --card: #1c2029; --up: #3ddc84;
          --down: #ff6b6b; --warn: #ffb020; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg);
         font: 20px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         padding: env(safe-area-inset-top) 12px 24px; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 8px;
           padding: 14px 4px 10px; }
  h1 { font-size: 1.3rem; margin: 0; overflow-wrap: anywhere; }
  #status { font-size: 0.85rem; font-weight: 600; padding: 4px 10px; border-radius: 999px;
            white-space: nowrap; background: var(--card); }
  #status.live { color: var(--up); }
  #status.connecting, #status.dropped { color: var(--warn); }
  #banner { display: none; margin: 0 0 10px; padding: 12px 14px; border-radius: 12px;
            background: #3a2a05; color: var(--warn); font-size: 1rem; }
  body.dropped #banner { display: block; }
  body.dropped #list { opacity: 0.55; }
  #updated { color: var(--muted); font-size: 0.9rem; margin: 0 4px 10px; }
  ol { list-style: none; margin: 0; padding: 0; }
  li { display: grid; grid-template-columns: 2.2em 1fr auto 1.4em; align-items: center;
       gap: 10px; background: var(--card); border-radius: 14px; padding: 14px 12px;
       margin-bottom: 8px; }
  .rank { font-size: 1.4rem; font-weight: 800; color: var(--muted); text-align: center; }
  .name { font-size: 1.25rem; font-weight: 650; overflow-wrap: anywhere; }
  .count { font-size: 1.4rem; font-weight: 800; font-variant-numeric: tabular-nums; }
  .trend { font-size: 1.3rem; text-align: center; }
  .trend.up { color: var(--up); } .trend.down { color: var(--down); }
  .trend.flat { color: var(--muted); }
  #empty { display: none; text-align: center; color: var(--muted); padding: 48px 12px;
           font-size: 1.2rem; }
  body.empty #empty { display: block; }
  @media (min-width: 700px) { body { max-width: 680px; margin: 0 auto; } }
</style>
</head>
<body class="empty" data-stream-id="__STREAM_ID__">
<header><h1>Trending in __STREAM_ID__</h1>
<span id="status" class="connecting" role="status">connecting…</span></header>
<div id="banner" role="alert">Connection lost — reconnecting.
The list below may be out of date.</div>
<div id="updated" aria-live="polite">waiting for the first list…</div>
<ol id="list" aria-label="trending items" data-rendered-at="0"></ol>
<div id="empty">Nothing trending yet.<br>Items appear here as soon as viewers act.</div>
<script>
(function () {
  "use strict";
  var streamId = document.body.dataset.streamId;
  var list = document.getElementById("list");
  var statusEl = document.getElementById("status");
  var updatedEl = document.getElementById("updated");
  var updatedAt = null;  // ms, by this device's clock
  var es = null, retryTimer = null;

  function setStatus(state, text) {
    statusEl.className = state;
    statusEl.textContent = text;
    document.body.classList.toggle("dropped", state === "dropped");
  }
  function fmtCount(c) {
    return (Math.round(c * 10) / 10).toString();
  }
  function tickAge() {
    if (updatedAt === null) { return; }
    var s = Math.max(0, Math.round((Date.now() - updatedAt) / 1000));
    updatedEl.textContent = "updated " + s + " s ago";
  }
  function render(data) {
    var rows = [];
    data.items.forEach(function (item) {
      var li = document.createElement("li");
      li.dataset.itemId = item.item_id;
      var rank = document.createElement("span");
      rank.className = "rank"; rank.textContent = item.rank;
      var name = document.createElement("span");
      name.className = "name"; name.textContent = item.title;
      var count = document.createElement("span");
      count.className = "count"; count.textContent = fmtCount(item.count);
      var trend = document.createElement("span");
      var v = item.velocity;
      trend.className = "trend " + (v > 0 ? "up" : v < 0 ? "down" : "flat");
      trend.textContent = v > 0 ? "▲" : v < 0 ? "▼" : "–";
      trend.setAttribute("aria-label", v > 0 ? "rising" : v < 0 ? "falling" : "steady");
      li.append(rank, name, count, trend);
      rows.push(li);
    });
    list.replaceChildren.apply(list, rows);
    document.body.classList.toggle("empty", rows.length === 0);
    if (data.age_s === null) {
      updatedAt = null;
      updatedEl.textContent = "no viewer activity in the last " + Math.round(data.window_s) + " s";
    } else {
      updatedAt = Date.now() - data.age_s * 1000;
      tickAge();
    }
    list.dataset.renderedAt = String(Date.now());
  }
  function connect() {
    if (es) { es.close(); }
    setStatus("connecting", "connecting…");
    // location.search carries a host's signed link (stream, exp, sig) to the events too.
    // Dots too: a stream named "." or ".." would otherwise be read as a path step.
    var path = encodeURIComponent(streamId).split(".").join("%2E");
    es = new EventSource("/live/" + path + "/events" + location.search);
    es.onopen = function () { setStatus("live", "● live"); };
    es.addEventListener("trending", function (ev) {
      setStatus("live", "● live");
      render(JSON.parse(ev.data));
    });
    es.onerror = function () {
      setStatus("dropped", "reconnecting…");
      // EventSource retries by itself unless the server answered with an error status.
      if (es.readyState === EventSource.CLOSED) {
        clearTimeout(retryTimer);
        retryTimer = setTimeout(connect, 3000);
      }
    };
  }
  setInterval(tickAge, 1000);
  connect();
})();
</script>
</body>
</html>
"""
