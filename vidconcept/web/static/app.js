// vidconcept's page: plain JS over the REST API, no build step.
// All state that matters lives in the URL (?q=&min_score=&video=&offset=&similar=&shot=),
// so a copied address reproduces the results; the page re-renders from the URL on every change.
"use strict";

const PAGE_SIZE = 24;
const SUGGESTIONS = 8;
const SHOT_SCORES = 12;   // concept scores listed under the player
const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), q: $("q"), suggest: $("suggest"), help: $("help"), helpToggle: $("help-toggle"),
  image: $("image"), minScore: $("min-score"), minScoreOut: $("min-score-out"), video: $("video"),
  concepts: $("concepts"), stats: $("stats"), status: $("status"), grid: $("grid"),
  prev: $("prev"), next: $("next"), pageInfo: $("page-info"),
  player: $("player"), videoEl: $("video-el"), shotTitle: $("shot-title"), shotTime: $("shot-time"),
  shotScores: $("shot-scores"), replay: $("replay"), playerMore: $("player-more"), closePlayer: $("close-player"),
  toolbarExtra: $("toolbar-extra"), feedbackSlot: $("feedback-slot"),
  account: $("account"), notice: $("notice"), audit: $("audit"), auditRows: $("audit-rows"),
};
let me = { role: "viewer" };  // who the server says we are (GET /api/me): the page offers only what the role may do
let concepts = [];       // [{name, shots}] of the index, for autocomplete
let videoNames = {};     // video id → file name
let current = null;      // the shot in the player
let stopAt = Infinity;   // the player pauses here: the end of the shot

// ---- helpers --------------------------------------------------------------
function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function score(v) {
  return v > 0 && v < 0.01 ? "<0.01" : v.toFixed(2);
}

function timecode(s) {
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) signIn();
  if (!response.ok) throw new Error(errorText(body, response));
  return body;
}

function signIn() {
  location.assign(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
}

function mayEdit() {
  return (me.role === "editor" || me.role === "admin") && !me.read_only;
}

function errorText(body, response) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
  return detail || `${response.status} ${response.statusText}`;
}

function setStatus(text, isError = false) {
  els.status.textContent = text;
  els.status.classList.toggle("error", isError);
  els.status.setAttribute("role", isError ? "alert" : "status");
}

// ---- URL state ------------------------------------------------------------
function state() {
  const p = new URLSearchParams(location.search);
  return {
    q: p.get("q") || "", minScore: Number(p.get("min_score") || 0), video: p.get("video") || "",
    offset: Math.max(0, Number(p.get("offset") || 0)), similar: p.get("similar"), shot: p.get("shot"),
  };
}

function navigate(changes, { push = true } = {}) {
  const p = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === "" || value === undefined || (key === "offset" && !value)) p.delete(key);
    else p.set(key, value);
  }
  const url = `${location.pathname}${p.toString() ? "?" + p : ""}`;
  history[push ? "pushState" : "replaceState"](null, "", url);
  render();
}

// ---- results --------------------------------------------------------------
async function render() {
  const s = state();
  els.q.value = s.q;
  els.minScore.value = s.minScore;
  els.minScoreOut.textContent = s.minScore.toFixed(2);
  els.video.value = s.video;
  for (const f of [els.minScore, els.video]) f.disabled = Boolean(s.similar);
  document.title = s.q ? `${s.q} · vidconcept` : "vidconcept";
  if (s.similar) await showPage(similarRequest(s), `look most like shot ${s.similar}`, s);
  else if (s.q) await showPage(searchRequest(s), `match “${s.q}”`, s);
  else showWelcome();
  if (s.shot && (!current || String(current.shot_id) !== s.shot)) openShot(s.shot);
  showConceptBar();
}

function searchRequest(s) {
  const p = new URLSearchParams({ q: s.q, top: PAGE_SIZE, offset: s.offset, min_score: s.minScore });
  if (s.video) p.set("video", s.video);
  return () => api(`/api/search?${p}`);
}

function similarRequest(s) {
  return () => api(`/api/similar?shot=${encodeURIComponent(s.similar)}&top=${PAGE_SIZE}`);
}

async function showPage(request, what, s) {
  setStatus("Searching…");
  try {
    const page = await request();
    showResults(page.results);
    showPager(page.total, page.results.length, s.similar ? 0 : s.offset, !s.similar);
    setStatus(page.total ? `${page.total} shot${page.total === 1 ? "" : "s"} ${what}`
                         : `No shots ${what}. Lower the min score, or try another concept.`);
  } catch (err) {
    showResults([]);
    showPager(0, 0, 0, false);
    setStatus(err.message, true);
  }
}

function showWelcome() {
  showResults([]);
  showPager(0, 0, 0, false);
  setStatus("Type a concept query above, pick a concept on the left, or search by image.");
}

function showResults(results) {
  els.grid.replaceChildren(...results.map(card));
}

function card(r) {
  const img = r.keyframe_url ? el("img", { src: r.keyframe_url, alt: `${r.video_name} shot ${r.shot_index}`, loading: "lazy" })
                             : el("span", { className: "no-keyframe", textContent: "no keyframe" });
  const thumb = el("button", { type: "button", className: "thumb", title: "Play this shot" }, img,
    el("span", { className: "score", textContent: score(r.score), title: `score ${r.score}` }),
    el("span", { className: "tc", textContent: `${timecode(r.start_s)}–${timecode(r.end_s)}` }));
  thumb.addEventListener("click", () => play(r));
  const more = el("button", { type: "button", className: "more", textContent: "More like this" });
  more.addEventListener("click", () => moreLike(r.shot_id));
  return el("article", { className: "card", dataset: { shot: r.shot_id } }, thumb,
    el("div", { className: "meta", title: r.video }, el("span", { textContent: r.video_name }),
      el("small", { textContent: `shot ${r.shot_index}` })),
    chips(r.concepts, 3),
    el("div", { className: "actions" }, more, ...thumbs(r.shot_id)));
}

function chips(scores, n) {
  return el("ul", { className: "chips" }, ...Object.entries(scores).slice(0, n).map(([name, v]) => {
    const chip = el("li", { title: `add ${name} to the query` }, `${name} `, el("small", { textContent: score(v) }));
    chip.addEventListener("click", () => addConcept(name));
    return chip;
  }));
}

function showPager(total, shown, offset, pageable) {
  els.prev.disabled = !pageable || offset === 0;
  els.next.disabled = !pageable || offset + shown >= total;
  els.pageInfo.textContent = shown ? `${offset + 1}–${offset + shown} of ${total}` : "";
}

function moreLike(shotId) {
  navigate({ similar: shotId, offset: null });
}

function addConcept(name) {
  const q = state().similar ? "" : state().q.trim();
  navigate({ q: q ? `${q} ${name}` : name, similar: null, offset: null });
}

// ---- player ---------------------------------------------------------------
function play(r) {
  current = r;
  els.player.hidden = false;
  els.shotTitle.textContent = `${r.video_name} · shot ${r.shot_index}`;
  els.shotTitle.title = r.video;
  els.shotTime.textContent = `${timecode(r.start_s)} – ${timecode(r.end_s)}  (${(r.end_s - r.start_s).toFixed(1)} s)`;
  for (const c of els.grid.querySelectorAll(".card")) c.classList.toggle("playing", c.dataset.shot === String(r.shot_id));
  if (state().shot !== String(r.shot_id)) history.replaceState(null, "", withParam("shot", r.shot_id));
  playShot();
  showScores(r.shot_id);
  els.feedbackSlot.replaceChildren(el("span", { textContent: "This shot:" }), ...thumbs(r.shot_id));
}

async function showScores(shotId) {
  els.shotScores.replaceChildren();
  const shot = await api(`/api/shots/${shotId}`).catch(() => null);
  if (!shot || !current || current.shot_id !== shotId) return;  // another shot was opened meanwhile
  els.shotScores.replaceChildren(...Object.entries(shot.scores).slice(0, SHOT_SCORES).map(([name, v]) => {
    const bar = el("span", { className: "bar" });
    bar.style.width = `${Math.round(100 * v)}%`;
    const row = el("tr", { title: `add ${name} to the query` }, el("td", { textContent: name }),
      el("td", { className: "bar-cell" }, bar), el("td", { textContent: score(v) }));
    row.addEventListener("click", () => addConcept(name));
    return row;
  }));
}

function withParam(key, value) {
  const p = new URLSearchParams(location.search);
  if (value === null) p.delete(key); else p.set(key, value);
  return `${location.pathname}${p.toString() ? "?" + p : ""}`;
}

function playShot() {
  const v = els.videoEl;
  const start = () => {
    stopAt = current.end_s;
    v.currentTime = current.start_s + 0.01;  // just inside the shot, not on the cut
    v.play().catch(() => {});                 // autoplay may be refused: the controls still work
    watchEnd();
  };
  if (v.getAttribute("src") !== current.video_url) {
    v.src = current.video_url;
    v.addEventListener("loadedmetadata", start, { once: true });
  } else start();
}

function watchEnd() {
  // requestVideoFrameCallback checks every frame; timeupdate (~4 Hz) is the fallback.
  const v = els.videoEl;
  if (!v.requestVideoFrameCallback) return;
  const check = (_now, frame) => {
    if (frame.mediaTime >= stopAt) stop();
    else if (!v.paused) v.requestVideoFrameCallback(check);
  };
  v.requestVideoFrameCallback(check);
}

function stop() {
  const v = els.videoEl;
  v.pause();
  if (v.currentTime > stopAt) v.currentTime = Math.max(current.start_s, stopAt - 0.01);
  stopAt = Infinity;  // a user who presses play again may watch on
}

async function openShot(id) {
  try {
    play(await api(`/api/shots/${encodeURIComponent(id)}`));
  } catch (err) {
    setStatus(err.message, true);
  }
}

function closePlayer() {
  els.videoEl.pause();
  els.player.hidden = true;
  current = null;
  for (const c of els.grid.querySelectorAll(".card.playing")) c.classList.remove("playing");
  history.replaceState(null, "", withParam("shot", null));
}

// ---- image query ----------------------------------------------------------
async function searchByImage(file) {
  const form = new FormData();
  form.append("image", file);
  closePlayer();
  history.pushState(null, "", "/");
  els.q.value = "";
  await showPage(() => api(`/api/similar?top=${PAGE_SIZE}`, { method: "POST", body: form }), `look most like ${file.name}`,
                 { similar: "image", offset: 0 });
}

// ---- autocomplete ---------------------------------------------------------
const OPERATORS = new Set(["AND", "OR", "NOT"]);

function wordAtCaret() {
  const text = els.q.value, end = els.q.selectionStart ?? text.length;
  let start = end;
  while (start > 0 && !/[\s()+*"]/.test(text[start - 1])) start--;
  return { start, end, word: text.slice(start, end) };
}

function suggest() {
  const { word } = wordAtCaret();
  const w = word.toLowerCase();
  if (!w || OPERATORS.has(word.toUpperCase()) || /^[\d.]+$/.test(w)) return hideSuggest();
  const prefix = [], inside = [];
  for (const c of concepts) {
    const i = c.name.toLowerCase().indexOf(w);
    if (i === 0) prefix.push(c); else if (i > 0) inside.push(c);
  }
  const byShots = (a, b) => b.shots - a.shots || a.name.length - b.name.length || a.name.localeCompare(b.name);
  const picks = [...prefix.sort(byShots), ...inside.sort(byShots)].slice(0, SUGGESTIONS);
  if (!picks.length || (picks.length === 1 && picks[0].name === word)) return hideSuggest();
  els.suggest.replaceChildren(...picks.map((c, i) => {
    const li = el("li", { role: "option", id: `sug-${i}`, dataset: { name: c.name } }, c.name,
      el("small", { textContent: c.shots ? `${c.shots} shots` : "" }));
    li.addEventListener("mousedown", (e) => { e.preventDefault(); accept(c.name); });
    return li;
  }));
  els.suggest.hidden = false;
  highlight(0);
}

function hideSuggest() {
  els.suggest.hidden = true;
  els.suggest.replaceChildren();
}

function highlight(i) {
  const items = [...els.suggest.children];
  items.forEach((li, j) => li.setAttribute("aria-selected", String(i === j)));
  if (items[i]) els.q.setAttribute("aria-activedescendant", items[i].id);
}

function accept(name) {
  const { start, end } = wordAtCaret(), text = els.q.value;
  els.q.value = text.slice(0, start) + name + " " + text.slice(end).trimStart();
  const caret = start + name.length + 1;
  els.q.setSelectionRange(caret, caret);
  hideSuggest();
}

function onQueryKey(e) {
  if (els.suggest.hidden) return;
  const items = [...els.suggest.children];
  let i = items.findIndex((li) => li.getAttribute("aria-selected") === "true");
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    i = (i + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
    highlight(i);
    e.preventDefault();
  } else if (e.key === "Tab" && items[i]) {
    accept(items[i].dataset.name);
    e.preventDefault();
  } else if (e.key === "Escape") {
    hideSuggest();
  }
}

// ---- side bar ---------------------------------------------------------------
async function loadIndexInfo() {
  const [conceptList, videos, stats] = await Promise.all([api("/api/concepts"), api("/api/videos"), api("/api/stats")]);
  concepts = conceptList;
  showConceptBar();
  for (const v of videos) {
    videoNames[v.id] = v.name;
    els.video.append(el("option", { value: v.id, textContent: v.name }));
  }
  els.video.value = state().video;
  showConcepts(conceptList.filter((c) => c.shots > 0).sort((a, b) => b.shots - a.shots).slice(0, 40));
  els.stats.textContent = `${stats.videos} videos · ${stats.shots} shots · ${stats.concepts} concepts`
    + ` · ${timecode(stats.video_seconds)} of video`;
}

function showConcepts(list) {
  if (!list.length) {
    els.concepts.replaceChildren(el("li", { className: "empty", textContent: "No shot scores 0.5 on any concept yet." }));
    return;
  }
  els.concepts.replaceChildren(...list.map((c) => {
    const li = el("li", { title: `add ${c.name} to the query` }, el("span", { textContent: c.name }),
      el("small", { textContent: c.shots }));
    li.addEventListener("click", () => addConcept(c.name));
    return li;
  }));
}

function toggleHelp(show) {
  els.help.hidden = !show;
  els.helpToggle.setAttribute("aria-expanded", String(show));
}

// ---- wiring -----------------------------------------------------------------
function wire() {
  els.form.addEventListener("submit", (e) => {
    e.preventDefault();
    hideSuggest();
    navigate({ q: els.q.value.trim(), similar: null, offset: null, shot: null });
  });
  els.q.addEventListener("input", suggest);
  els.q.addEventListener("keydown", onQueryKey);
  els.q.addEventListener("blur", () => setTimeout(hideSuggest, 100));
  els.helpToggle.addEventListener("click", () => toggleHelp(els.help.hidden));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") toggleHelp(false); });
  document.addEventListener("click", (e) => {
    if (!els.help.hidden && !els.help.contains(e.target) && e.target !== els.helpToggle) toggleHelp(false);
  });
  els.minScore.addEventListener("input", () => { els.minScoreOut.textContent = Number(els.minScore.value).toFixed(2); });
  els.minScore.addEventListener("change", () => navigate({ min_score: els.minScore.value === "0" ? null : els.minScore.value, offset: null }));
  els.video.addEventListener("change", () => navigate({ video: els.video.value, offset: null }));
  els.prev.addEventListener("click", () => navigate({ offset: Math.max(0, state().offset - PAGE_SIZE) }));
  els.next.addEventListener("click", () => navigate({ offset: state().offset + PAGE_SIZE }));
  els.image.addEventListener("change", () => { if (els.image.files[0]) searchByImage(els.image.files[0]); els.image.value = ""; });
  els.replay.addEventListener("click", () => current && playShot());
  els.playerMore.addEventListener("click", () => current && moreLike(current.shot_id));
  els.closePlayer.addEventListener("click", closePlayer);
  els.videoEl.addEventListener("timeupdate", () => { if (els.videoEl.currentTime >= stopAt) stop(); });
  window.addEventListener("popstate", render);
}


// ---- user concepts (issue 10): thumbs up/down, new concept, retrain, suggest ----------------
// Thumbs up ✓ / down ✗ mark shots as showing (true) or not showing (false) a concept; the marks are pending until
// "New concept" trains one from them, or "Retrain" adds them to the concept the query names.
const feedback = new Map();  // shot id → true (✓) / false (✗)

function thumbs(shotId) {
  if (!mayEdit()) return [];  // a viewer cannot label: no buttons (the server refuses the request anyway)
  return [true, false].map((up) => {
    const b = el("button", { type: "button", className: `thumb-${up ? "up" : "down"}`, textContent: up ? "✓" : "✗",
      title: up ? "shows the concept" : "does not show the concept", dataset: { shot: shotId, up } });
    b.setAttribute("aria-pressed", String(feedback.get(shotId) === up));
    b.addEventListener("click", () => mark(shotId, up));
    return b;
  });
}

function mark(shotId, up) {
  if (feedback.get(shotId) === up) feedback.delete(shotId); else feedback.set(shotId, up);
  for (const b of document.querySelectorAll(`[data-shot="${shotId}"][data-up]`)) {
    b.setAttribute("aria-pressed", String(feedback.get(shotId) === (b.dataset.up === "true")));
  }
  showConceptBar();
}

function labels() {
  const positive = [], negative = [];
  for (const [shot, up] of feedback) (up ? positive : negative).push(shot);
  return { positive, negative };
}

function activeUserConcept() {
  const q = state().similar ? "" : state().q.trim().toLowerCase();
  return concepts.find((c) => c.source === "user" && c.name.toLowerCase() === q) || null;
}

const bar = {};

function wireConceptBar() {
  bar.counts = el("span", { className: "label-counts" });
  bar.name = el("input", { type: "text", placeholder: "concept name", pattern: "[A-Za-z0-9_\\-]+", maxLength: 64,
    ariaLabel: "New concept name", hidden: true });
  bar.create = el("button", { type: "button", textContent: "New concept", title: "Train a concept from the ✓/✗ marks on the results" });
  bar.retrain = el("button", { type: "button", className: "primary", textContent: "Retrain" });
  bar.suggest = el("button", { type: "button", textContent: "Suggest", title: "Shots worth labelling next" });
  bar.remove = el("button", { type: "button", textContent: "Remove", title: "Delete this user concept" });
  bar.create.addEventListener("click", createConcept);
  bar.name.addEventListener("keydown", (e) => { if (e.key === "Enter") createConcept(); });
  bar.retrain.addEventListener("click", retrain);
  bar.suggest.addEventListener("click", showSuggestions);
  bar.remove.addEventListener("click", removeConcept);
  els.toolbarExtra.replaceChildren(bar.counts, bar.name, bar.create, bar.retrain, bar.suggest, bar.remove);
  showConceptBar();
}

function showConceptBar() {
  if (!bar.counts) return;
  const { positive, negative } = labels(), user = activeUserConcept();
  bar.counts.textContent = `✓ ${positive.length} · ✗ ${negative.length}`;
  bar.create.hidden = Boolean(user);
  bar.create.disabled = !positive.length;
  for (const b of [bar.retrain, bar.suggest, bar.remove]) b.hidden = !user;
  bar.retrain.disabled = !positive.length && !negative.length;
  bar.retrain.title = user ? `Add the marks to ${user.name} and retrain` : "";
  if (user) bar.name.hidden = true;
}

async function createConcept() {
  if (bar.name.hidden) { bar.name.hidden = false; bar.name.focus(); return; }
  const name = bar.name.value.trim();
  await conceptCall(`Training ${name}…`, () => api("/api/concepts", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name, ...labels() }) }),
    () => { bar.name.value = ""; bar.name.hidden = true; navigate({ q: name, similar: null, offset: null }); });
}

async function retrain() {
  const user = activeUserConcept();
  await conceptCall(`Retraining ${user.name}…`, () => api(`/api/concepts/${encodeURIComponent(user.name)}/labels`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(labels()) }), render);
}

async function removeConcept() {
  const user = activeUserConcept();
  if (!confirm(`Delete the concept ${user.name} and its scores?`)) return;
  await conceptCall(`Removing ${user.name}…`, () => api(`/api/concepts/${encodeURIComponent(user.name)}`, { method: "DELETE" }),
    () => navigate({ q: null, offset: null }));
}

async function conceptCall(busy, request, then) {
  setStatus(busy);
  try {
    await request();
    feedback.clear();
    concepts = await api("/api/concepts");
    showConcepts(concepts.filter((c) => c.shots > 0).sort((a, b) => b.shots - a.shots).slice(0, 40));
    then();
  } catch (err) {
    setStatus(err.message, true);
  }
  showConceptBar();
}

async function showSuggestions() {
  const user = activeUserConcept();
  try {
    const found = await api(`/api/concepts/${encodeURIComponent(user.name)}/suggest`);
    showResults(found.next);
    showPager(0, 0, 0, false);
    setStatus(found.next.length ? `Label these ${found.next.length} shots (the most uncertain and the best-scored ` +
      `not yet labelled) with ✓/✗, then Retrain.` : `Every shot is labelled for ${user.name}.`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

// ---- account: who we are, sign out, the audit log ------------------------------------
async function loadMe() {
  me = await api("/api/me");
  const parts = [];
  if (me.open) {
    els.notice.hidden = false;
    els.notice.textContent = me.local && !me.read_only
      ? "No accounts: anyone on this machine can use this page (only this machine can reach it). "
        + "Add one with `vidconcept user add NAME --role admin` to require sign-in."
      : "No accounts: this index is served read-only to anyone who can reach it.";
  } else {
    parts.push(el("span", { className: "who", textContent: `${me.user} · ${me.role}` }));
    const out = el("button", { type: "button", id: "sign-out", textContent: "Sign out" });
    out.addEventListener("click", async () => { await fetch("/api/session", { method: "DELETE" }); signIn(); });
    parts.push(out);
  }
  if (mayEdit()) {
    const log = el("button", { type: "button", id: "audit-toggle", textContent: "Audit log" });
    log.addEventListener("click", toggleAudit);
    parts.unshift(log);
  }
  els.account.replaceChildren(...parts);
}

async function toggleAudit() {
  els.audit.hidden = !els.audit.hidden;
  if (els.audit.hidden) return;
  const rows = await api("/api/audit?limit=50");
  els.auditRows.replaceChildren(...rows.map((r) => el("tr", { dataset: { action: r.action, target: r.target || "" } },
    el("td", { textContent: r.at.replace("T", " ").replace("+00:00", "Z") }), el("td", { textContent: r.user }),
    el("td", { textContent: r.action }), el("td", { textContent: r.target || "" }),
    el("td", { textContent: Object.entries(r.detail).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(" · ") }))));
}

async function start() {
  wire();
  try {
    await loadMe();
  } catch (err) {
    return;  // 401: on the way to the sign-in page
  }
  if (mayEdit()) wireConceptBar();
  loadIndexInfo().catch((err) => setStatus(`Cannot read the index: ${err.message}`, true));
  render();
}

start();
