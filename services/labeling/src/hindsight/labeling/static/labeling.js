/* Hindsight labeling page: keyboard-first labeling without page reloads. */
(function () {
  "use strict";

  const items = JSON.parse(document.getElementById("items-data").textContent);
  const config = JSON.parse(document.getElementById("config-data").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const byId = new Map(items.map((it, i) => [it.trade_id, i]));
  const cards = Array.from(document.querySelectorAll("#grid .card"));
  const grid = document.getElementById("grid");
  const review = document.getElementById("review");
  const chart = document.getElementById("chart");
  const toast = document.getElementById("toast");
  const toastText = document.getElementById("toast-text");
  const bulkBox = document.getElementById("bulk-confirm");
  const commentBox = document.getElementById("comment-box");
  const commentText = document.getElementById("comment-text");

  const state = {
    index: 0,
    view: "grid",
    kind: "original",
    selected: new Set(),
    anchor: null,
    pendingBulk: null,
    grades: new Map(),
    comments: new Map(),
    busy: Promise.resolve(),
  };
  // Page-action timings (ms from the key press to the updated page), read by tests.
  window.hindsightTimings = [];

  // --- keymap -----------------------------------------------------------------------
  const norm = (k) => (k.length === 1 ? k.toLowerCase() : k);
  const keyToAction = new Map();
  for (const [action, keys] of Object.entries(config.keymap)) {
    for (const k of keys) keyToAction.set(norm(k), action);
  }
  const keyName = (action) => {
    const k = (config.keymap[action] || [])[0];
    if (k === undefined) return "";
    return k === " " ? "Space" : k.length === 1 ? k.toUpperCase() : k.replace("Arrow", "");
  };
  document.getElementById("keybar").innerHTML = [
    ["approve", "approve"], ["reject", "reject"], ["review", "review"], ["comment", "comment"],
    ["next", "next"], ["prev", "previous"], ["undo", "undo"], ["select", "select"],
    ["open", "open"], ["close", "grid"], ["toggle_image", "chart"],
  ].concat(config.memory_up ? [["similar", "similar"]] : [])
    .concat(config.next_page ? [["next_page", "next page"]] : [])
    .concat(config.prev_page ? [["prev_page", "prev page"]] : [])
    .map(([a, label]) => `<span><kbd>${escapeHtml(keyName(a))}</kbd> ${label}</span>`).join("");
  for (const btn of document.querySelectorAll(".act kbd")) {
    const action = btn.parentElement.dataset.action;
    if (config.keymap[action]) btn.textContent = keyName(action);
  }
  for (const kbd of document.querySelectorAll("#pager kbd[data-action]")) {
    kbd.textContent = keyName(kbd.dataset.action);
  }

  // --- helpers ----------------------------------------------------------------------
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  // Toasts go away by themselves (errors stay longer) and on a click of their ×.
  const TOAST_MS = { info: 2500, ok: 2500, error: 8000 };
  let toastTimer = null;
  function hideToast() {
    clearTimeout(toastTimer);
    toast.hidden = true;
  }
  function say(message, kind) {
    kind = kind || "info";
    toastText.textContent = message;
    toast.className = "toast " + kind;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(hideToast, TOAST_MS[kind] || TOAST_MS.info);
  }
  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", [config.csrf_header]: csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const msg = (data && (data.message || data.detail)) || response.statusText;
      if (response.status === 401) { window.location.href = "/login"; }
      throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
    }
    return data;
  }
  const pct = (x) => (x === null || x === undefined ? "–" : Math.round(100 * x) + "%");
  const fmt = (v) => (v === null || v === undefined || v === "" ? "–" : typeof v === "number" ? String(+v.toFixed(5)) : escapeHtml(v));

  // --- rendering --------------------------------------------------------------------
  function updateCounts(c) {
    if (!c) return;
    document.getElementById("count-labeled").textContent = c.labeled;
    document.getElementById("count-total").textContent = c.total;
    document.getElementById("count-review").textContent = c.review;
    document.getElementById("count-disagreements").textContent = c.disagreements;
    document.getElementById("agreement").textContent = c.with_suggestion ? pct(c.agreed / c.with_suggestion) : "–";
    document.getElementById("progress-fill").style.width = (c.total ? (100 * c.labeled) / c.total : 0) + "%";
  }
  function renderCard(i) {
    const it = items[i], card = cards[i];
    if (!card) return;
    card.className = "card status-" + it.status + (it.disagreement ? " disagree" : "") +
      (state.selected.has(it.trade_id) ? " selected" : "") + (i === state.index ? " focused" : "");
    const badge = card.querySelector(".label-badge");
    badge.className = "badge label-badge " + (it.label || "none");
    badge.textContent = it.label || "unlabeled";
  }
  // The selection, in page order (only trades of this page can be selected).
  const selectedItems = () => items.filter((it) => state.selected.has(it.trade_id));
  function summary(list, max) {
    const ids = list.slice(0, max).map((it) => it.trade_id).join(", ");
    return list.length > max ? ids + ", … +" + (list.length - max) + " more" : ids;
  }
  function renderSelection() {
    const bar = document.getElementById("selection-bar");
    const chosen = selectedItems();
    document.getElementById("selection-count").textContent = chosen.length;
    document.getElementById("selection-list").textContent = summary(chosen, 12);
    document.getElementById("selection-list").title = chosen.map((it) => it.trade_id).join(", ");
    bar.hidden = chosen.length === 0;
    document.body.classList.toggle("has-selection", chosen.length > 0);
  }
  function renderReview() {
    const it = items[state.index];
    if (!it) return;
    document.getElementById("r-trade-id").textContent = it.trade_id;
    const badge = document.getElementById("r-label");
    badge.className = "badge label-badge " + (it.label || "none");
    badge.textContent = it.label || "unlabeled";
    document.getElementById("r-flag").hidden = !it.disagreement;
    document.getElementById("position").textContent = (state.index + 1) + " / " + items.length;
    const kind = state.kind === "annotated" && it.has_annotated ? "annotated" : "original";
    for (const tab of document.querySelectorAll(".chart-tabs .tab")) {
      tab.classList.toggle("active", tab.dataset.kind === kind);
      tab.disabled = tab.dataset.kind === "annotated" ? !it.has_annotated : !it.has_original;
    }
    const src = (it.has_original || it.has_annotated) ? "/images/" + encodeURIComponent(it.trade_id) + "/" + (it.has_original ? kind : "annotated") : "";
    if (chart.getAttribute("src") !== src) { if (src) chart.src = src; else chart.removeAttribute("src"); }
    const t = it.trade || {};
    const rows = [
      ["Symbol", (it.symbol || "–") + " · " + (it.timeframe || "–")], ["Side", t.side], ["Setup", t.setup],
      ["Entry", t.entry], ["Stop loss", t.sl], ["Take profit", t.tp], ["Result", t.result || (it.trade_state === "open" ? "open" : null)],
      ["PnL", t.pnl], ["Realised R", t.realised_r], ["Opened", t.opened_at], ["Closed", t.closed_at], ["Run", it.run_id],
    ];
    document.getElementById("r-trade").innerHTML = rows.map(([k, v]) => {
      const cls = k === "Result" && v ? ' class="result ' + escapeHtml(v) + '"' : k === "Side" && v ? ' class="side ' + escapeHtml(v) + '"' : "";
      return `<tr><th>${k}</th><td${cls}>${fmt(v)}</td></tr>`;
    }).join("");
    const s = it.suggestion;
    document.getElementById("r-model").textContent = s && s.model ? "· " + s.model : "";
    document.getElementById("r-suggestion").innerHTML = s ? `
      <div class="sugg-line"><span class="badge label-badge ${escapeHtml(s.label)}">${escapeHtml(s.label)}</span>
        <span class="grade">grade <b>${fmt(s.quality_grade)}</b></span>
        <span class="conf">confidence <b>${pct(s.confidence)}</b></span></div>
      <div class="conf-bar"><div class="conf-fill"></div></div>
      <p class="sugg-comment">${fmt(s.comment)}</p>` : '<p class="muted">No suggestion for this trade.</p>';
    const fill = document.querySelector("#r-suggestion .conf-fill");
    if (fill) fill.style.width = Math.round(100 * ((s && s.confidence) || 0)) + "%";
    document.getElementById("r-grade").textContent = state.grades.get(it.trade_id) || it.quality_grade || "–";
    document.getElementById("r-comment").textContent = state.comments.get(it.trade_id) || it.user_comment || "–";
  }
  function render() {
    cards.forEach((_, i) => renderCard(i));
    renderSelection();
    if (state.view === "review") renderReview();
  }
  function focus(i, scroll) {
    if (items.length === 0) return;
    const prev = state.index;
    state.index = Math.max(0, Math.min(items.length - 1, i));
    renderCard(prev);
    renderCard(state.index);
    if (state.view === "review") renderReview();
    else if (scroll !== false && cards[state.index]) cards[state.index].scrollIntoView({ block: "nearest" });
  }
  function openReview(i) {
    if (items.length === 0) return;
    state.view = "review";
    grid.hidden = true;
    review.hidden = false;
    focus(i === undefined ? state.index : i);
  }
  function closeReview() {
    state.view = "grid";
    review.hidden = true;
    grid.hidden = false;
    focus(state.index);
  }
  function applySaved(record) {
    const i = byId.get(record.trade_id);
    if (i === undefined) return;
    const it = items[i];
    it.label = record.label;
    it.quality_grade = record.quality_grade;
    it.user_comment = record.user_comment;
    it.llm_agreed = record.llm_agreed;
    it.labeler_id = record.labeler_id;
    it.status = record.label === "review" ? "review" : "labeled";
    it.disagreement = !!(it.suggestion && it.suggestion.label && it.suggestion.label !== record.label);
    state.grades.delete(it.trade_id);
    state.comments.delete(it.trade_id);
    renderCard(i);
  }

  // --- actions ----------------------------------------------------------------------
  const LABELS = { approve: "approved", reject: "rejected", review: "review" };
  const GRADES = { grade_a: "A", grade_b: "B", grade_c: "C", grade_d: "D" };

  // A bulk label first says what it will do: how many trades change, which ones. Only
  // those are sent; trades that already carry the label are left as they are.
  function askBulk(value) {
    const chosen = selectedItems();
    const changing = chosen.filter((it) => it.label !== value);
    const same = chosen.length - changing.length;
    state.pendingBulk = { value, ids: changing.map((it) => it.trade_id) };
    const n = (k) => k + (k === 1 ? " trade" : " trades");
    document.getElementById("bulk-title").textContent = "Label " + n(chosen.length) + " as " + value + "?";
    const kept = same === 1 ? " stays as it is." : " stay as they are.";
    document.getElementById("bulk-summary").textContent = changing.length
      ? n(changing.length) + " will change" + (same ? "; " + same + " already " + value + kept : ".")
      : "None will change: all " + n(chosen.length) + " are already " + value + ".";
    document.getElementById("bulk-list").textContent = summary(changing.length ? changing : chosen, 50);
    document.getElementById("bulk-ok-text").textContent = changing.length ? "Label " + changing.length : "Close";
    bulkBox.hidden = false;
  }
  function closeBulk() {
    state.pendingBulk = null;
    bulkBox.hidden = true;
  }
  async function confirmBulk() {
    const pending = state.pendingBulk;
    closeBulk();
    if (!pending || pending.ids.length === 0) return;
    const data = await api("POST", "/api/labels/bulk", { trade_ids: pending.ids, label: pending.value });
    data.saved.forEach(applySaved);
    state.selected.clear();
    render();
    updateCounts(data.counts);
    say(pending.ids.length + " trades labeled " + pending.value, "ok");
  }

  async function label(action) {
    const value = LABELS[action];
    if (state.selected.size > 0) {
      askBulk(value);
      return;
    }
    const it = items[state.index];
    if (!it) return;
    const body = { trade_id: it.trade_id, label: value };
    if (state.grades.has(it.trade_id)) body.quality_grade = state.grades.get(it.trade_id);
    if (state.comments.has(it.trade_id)) body.user_comment = state.comments.get(it.trade_id);
    const data = await api("POST", "/api/labels", body);
    applySaved(data.saved);
    updateCounts(data.counts);
    focus(state.index + 1);
  }
  async function undo() {
    const data = await api("POST", "/api/undo");
    applySaved(data.restored);
    updateCounts(data.counts);
    const i = byId.get(data.undone);
    if (i !== undefined) focus(i);
    say("Undone: " + data.undone + " is now " + data.restored.label, "ok");
  }
  async function similar() {
    const it = items[state.index];
    if (!it || !config.memory_up) return;
    const data = await api("GET", "/api/items/" + encodeURIComponent(it.trade_id) + "/similar");
    let n = 0;
    for (const id of [it.trade_id].concat(data.similar)) {
      if (byId.has(id)) { state.selected.add(id); n += 1; }
    }
    render();
    say(n + " similar trades selected: Y/N/R labels them all", "ok");
  }
  function toggleSelect(i) {
    const id = items[i] && items[i].trade_id;
    if (!id) return;
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
    state.anchor = i;
    renderCard(i);
    renderSelection();
  }
  function openComment() {
    const it = items[state.index];
    if (!it) return;
    document.getElementById("comment-trade").textContent = it.trade_id;
    commentText.value = state.comments.get(it.trade_id) || it.user_comment || "";
    commentBox.hidden = false;
    commentText.focus();
  }
  function closeComment(save) {
    const it = items[state.index];
    if (save && it) {
      const text = commentText.value.trim();
      if (text) state.comments.set(it.trade_id, text); else state.comments.delete(it.trade_id);
      say("Comment kept: it is saved with the next label of " + it.trade_id, "info");
    }
    commentBox.hidden = true;
    commentText.blur();
    if (state.view === "review") renderReview();
  }

  function run(action) {
    switch (action) {
      case "approve": case "reject": case "review": return label(action);
      case "next":
        if (state.index === items.length - 1 && config.next_page) say("Last trade of this page: " + keyName("next_page") + " opens the next page", "info");
        focus(state.index + 1); return null;
      case "prev": focus(state.index - 1); return null;
      case "next_page": if (config.next_page) window.location.href = config.next_page; return null;
      case "prev_page": if (config.prev_page) window.location.href = config.prev_page; return null;
      case "bulk_confirm": return confirmBulk();
      case "bulk_cancel": closeBulk(); return null;
      case "undo": return undo();
      case "select": toggleSelect(state.index); return null;
      case "similar": return similar();
      case "comment": openComment(); return null;
      case "toggle_image": state.kind = state.kind === "original" ? "annotated" : "original"; renderReview(); return null;
      case "open": openReview(); return null;
      case "close":
        if (state.selected.size) { state.selected.clear(); render(); } else if (state.view === "review") closeReview();
        return null;
      default:
        if (GRADES[action]) {
          const it = items[state.index];
          if (it) { state.grades.set(it.trade_id, GRADES[action]); if (state.view === "review") renderReview(); }
        }
        return null;
    }
  }
  // Actions run one after another, so a fast second key acts on the item the first left.
  function dispatch(action, startedAt) {
    state.busy = state.busy.then(async () => {
      try {
        await run(action);
        window.hindsightTimings.push({ action, ms: performance.now() - startedAt });
      } catch (err) {
        say("Not saved: " + err.message, "error");
      }
    });
  }

  document.addEventListener("keydown", (ev) => {
    if (!bulkBox.hidden) {
      if (ev.key === "Enter") { ev.preventDefault(); dispatch("bulk_confirm", ev.timeStamp || performance.now()); }
      else if (ev.key === "Escape") { ev.preventDefault(); dispatch("bulk_cancel", ev.timeStamp || performance.now()); }
      return;
    }
    if (!commentBox.hidden) {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); closeComment(true); }
      else if (ev.key === "Escape") { ev.preventDefault(); closeComment(false); }
      return;
    }
    const tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const action = keyToAction.get(norm(ev.key));
    if (!action) return;
    if (action === "similar" && !config.memory_up) return;
    ev.preventDefault();
    dispatch(action, ev.timeStamp || performance.now());
  });

  grid.addEventListener("click", (ev) => {
    const card = ev.target.closest(".card");
    if (!card) return;
    const i = Number(card.dataset.index);
    if (ev.shiftKey && state.anchor !== null) {
      const [a, b] = [Math.min(state.anchor, i), Math.max(state.anchor, i)];
      for (let j = a; j <= b; j++) state.selected.add(items[j].trade_id);
      render();
    } else if (ev.ctrlKey || ev.metaKey) {
      toggleSelect(i);
    } else {
      state.anchor = i;
      focus(i, false);
      if (ev.detail >= 2) openReview(i);
    }
  });
  for (const btn of document.querySelectorAll(".act")) {
    btn.addEventListener("click", () => dispatch(btn.dataset.action, performance.now()));
  }
  for (const tab of document.querySelectorAll(".chart-tabs .tab")) {
    tab.addEventListener("click", () => { state.kind = tab.dataset.kind; renderReview(); });
  }
  document.getElementById("bulk-ok").addEventListener("click", () => dispatch("bulk_confirm", performance.now()));
  document.getElementById("bulk-cancel").addEventListener("click", () => dispatch("bulk_cancel", performance.now()));
  document.getElementById("toast-close").addEventListener("click", hideToast);
  document.getElementById("selection-clear").addEventListener("click", () => { state.selected.clear(); render(); });
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/logout"); } catch (e) { /* already out */ }
    window.location.href = "/login";
  });
  document.getElementById("similar-button").hidden = !config.memory_up;

  // Start on the first unlabeled trade (or the one asked for).
  const labeled0 = +document.getElementById("count-labeled").textContent;
  const total0 = +document.getElementById("count-total").textContent;
  document.getElementById("progress-fill").style.width = (total0 ? (100 * labeled0) / total0 : 0) + "%";
  const first = config.focus && byId.has(config.focus) ? byId.get(config.focus) : Math.max(0, items.findIndex((it) => it.status === "unlabeled"));
  state.index = first;
  render();
  if (config.focus && byId.has(config.focus)) openReview(first);
  document.body.dataset.ready = "1";
})();
