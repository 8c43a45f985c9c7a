// radit review: every text from the server is written with textContent, never as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (sel, root = document) => root.querySelector(sel);
let queue = { index: 0, total: 0 };
let shown = [];

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["x-radit-token"] = token;
  const response = await fetch(path, body === undefined
    ? { headers }
    : { method: "POST", headers, body: JSON.stringify(body) });
  let data;
  try { data = await response.json(); } catch (_) { data = { error: response.statusText }; }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function status(el, text, error = false) {
  el.textContent = text;
  el.classList.toggle("error", error);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

const fmt = (v, digits = 3) => (v === null || v === undefined) ? "–" : Number(v).toFixed(digits);

function toggle(group, button) {
  const on = !button.classList.contains("on");
  for (const b of group) b.classList.remove("on");
  if (on) button.classList.add("on");
}

function renderAnswer(view, side) {
  const node = $("#answer-template").content.firstElementChild.cloneNode(true);
  node.dataset.side = side;
  node.dataset.answerId = view.id;
  const models = view.models;
  $(".side", node).textContent = (shown.length > 1 || side === "b" ? side.toUpperCase() + ": " : "")
    + models.label + " (answer #" + view.id + ")";
  $(".answer-text", node).textContent = view.answer;
  $(".logp", node).textContent = view.log_p === null ? "" : "log p = " + fmt(view.log_p, 4);
  const right = $(".right", node), wrong = $(".wrong", node);
  right.onclick = () => toggle([right, wrong], right);
  wrong.onclick = () => toggle([right, wrong], wrong);
  const body = $(".chunks", node);
  view.chunks.forEach((c, rank) => {
    const row = document.createElement("tr");
    row.className = "chunk";
    row.dataset.rank = rank;
    row.dataset.chunkId = c.chunk_id;
    cell(row, String(rank + 1));
    cell(row, String(c.chunk_id));
    cell(row, fmt(c.p_r), "num p-r");
    cell(row, fmt(c.share), "num share");
    cell(row, c.text, "text");
    const td = cell(row, "");
    const yes = document.createElement("button");
    yes.type = "button"; yes.className = "helpful"; yes.textContent = "helpful";
    const no = document.createElement("button");
    no.type = "button"; no.className = "not-helpful"; no.textContent = "not helpful";
    yes.onclick = () => toggle([yes, no], yes);
    no.onclick = () => toggle([yes, no], no);
    td.append(yes, " ", no);
    body.appendChild(row);
  });
  $(".save", node).onclick = () => save(node);
  return node;
}

async function save(node) {
  const saved = $(".saved", node);
  const verdict = $(".right", node).classList.contains("on") ? "right"
    : $(".wrong", node).classList.contains("on") ? "wrong" : null;
  const chunks = [];
  for (const row of node.querySelectorAll("tr.chunk")) {
    const rank = Number(row.dataset.rank);
    if ($(".helpful", row).classList.contains("on")) chunks.push([rank, "helpful"]);
    if ($(".not-helpful", row).classList.contains("on")) chunks.push([rank, "not_helpful"]);
  }
  const correction = $(".correction", node).value.trim();
  const judgment = {
    answer_id: Number(node.dataset.answerId),
    reviewer: $("#reviewer").value.trim() || null,
    verdict,
    correction: correction || null,
    chunks,
  };
  status(saved, "saving…");
  try {
    const r = await api("/api/judge", judgment);
    status(saved, "saved (judgment #" + r.id + ")");
    await loadRecent();
  } catch (e) {
    status(saved, "not saved: " + e.message, true);
  }
}

async function ask() {
  const question = $("#question").value.trim();
  const out = $("#status");
  if (!question) { status(out, "type a question first", true); return; }
  status(out, "answering…");
  $("#ask").disabled = true;
  try {
    const r = await api("/api/ask", { question });
    shown = r.answers;
    const answers = $("#answers");
    answers.replaceChildren(...r.answers.map((a, i) => renderAnswer(a, i === 0 ? "a" : "b")));
    $("#compare").hidden = r.answers.length < 2;
    status($("#prefer-status"), "");
    status(out, "answered");
  } catch (e) {
    status(out, e.message, true);
  } finally {
    $("#ask").disabled = false;
  }
}

async function prefer(choice) {
  const el = $("#prefer-status");
  if (shown.length < 2) return;
  try {
    const r = await api("/api/prefer", {
      answer_a: shown[0].id, answer_b: shown[1].id, choice,
      reviewer: $("#reviewer").value.trim() || null,
    });
    status(el, "saved (preference #" + r.id + ")");
  } catch (e) {
    status(el, "not saved: " + e.message, true);
  }
}

async function loadRecent() {
  const r = await api("/api/recent");
  const list = $("#recent");
  list.replaceChildren(...r.judgments.map((j) => {
    const li = document.createElement("li");
    li.dataset.answerId = j.answer.id;
    const labels = j.judgment.chunks.map(([rank, label]) =>
      "chunk " + j.answer.chunks[rank].chunk_id + " " + label.replace("_", " ")).join(", ");
    const parts = [
      j.answer.question + " → " + j.answer.answer,
      j.judgment.verdict ? "answer " + j.judgment.verdict : null,
      j.judgment.correction ? "corrected to “" + j.judgment.correction + "”" : null,
      labels || null,
      j.judgment.reviewer ? "by " + j.judgment.reviewer : null,
    ].filter(Boolean);
    li.textContent = parts.join(" · ");
    return li;
  }));
}

async function loadQueueItem(index) {
  const item = await api("/api/queue/" + index);
  queue = item;
  $("#question").value = item.question;
  $("#progress").textContent = "Question " + (item.index + 1) + " of " + item.total
    + (item.judgments ? " (judged " + item.judgments + "×)" : "");
  $("#prev").disabled = item.index === 0;
  $("#next").disabled = item.index + 1 >= item.total;
  await ask();
}

async function start() {
  $("#reviewer").value = localStorage.getItem("radit-reviewer") || "";
  $("#reviewer").onchange = () => localStorage.setItem("radit-reviewer", $("#reviewer").value);
  $("#ask").onclick = ask;
  $("#question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); ask(); }
  });
  for (const b of document.querySelectorAll("button.prefer")) b.onclick = () => prefer(b.dataset.choice);
  try {
    const info = await api("/api/info");
    $("#models").textContent = info.models.map((m, i) =>
      (info.compare ? String.fromCharCode(65 + i) + ": " : "") + m).join("  vs  ");
    await loadRecent();
    if (info.queue > 0) {
      $("#queue").hidden = false;
      $("#prev").onclick = () => loadQueueItem(queue.index - 1);
      $("#next").onclick = () => loadQueueItem(queue.index + 1);
      await loadQueueItem(0);
    }
  } catch (e) {
    status($("#status"), e.message, true);
  }
}

start();
