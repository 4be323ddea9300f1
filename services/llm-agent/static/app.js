// The agent's page. Every value from the server is rendered with textContent, never parsed as HTML.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function selected(name) {
  const checked = document.querySelector(`input[name="${name}"]:checked`);
  return checked ? checked.value : null;
}

function keyValues(obj) {
  const dl = el("dl");
  for (const [k, v] of Object.entries(obj || {})) {
    dl.append(el("dt", null, k.replace(/^\d+_/, "").replace(/_/g, " ")));
    dl.append(el("dd", null, typeof v === "object" ? JSON.stringify(v) : v));
  }
  return dl;
}

function renderTrace(entries) {
  const list = document.getElementById("trace");
  list.replaceChildren();
  for (const e of entries || []) {
    const li = el("li", e.outcome);
    if (e.message === "_doc_links") {
      li.append(el("span", "step", "Docs: access token claims, agent token claims, agent OBO flow (learn.microsoft.com)"));
      list.append(li);
      continue;
    }
    li.append(el("span", "step", e.step), document.createTextNode(" "), el("span", null, e.message));
    li.append(el("div", "meta", `${e.timestamp} · +${e.duration_ms} ms · ${e.outcome}`));
    if (e.data && e.data._jwt_token) {
      const card = el("div", "card");
      card.append(el("div", "step", e.data._jwt_token.title));
      card.append(keyValues(e.data._jwt_token.claims));
      li.append(card);
    } else if (e.data && typeof e.data === "object") {
      li.append(keyValues(e.data));
    }
    list.append(li);
  }
}

function addMessage(cls, text) {
  const box = document.getElementById("messages");
  box.append(el("div", `msg ${cls}`, text));
  box.scrollTop = box.scrollHeight;
}

async function refreshStatus() {
  try {
    const s = await (await fetch("/api/status")).json();
    const bar = document.getElementById("status");
    bar.replaceChildren(
      el("span", s.bedrock_available ? "dot-ok" : "dot-bad", "AWS credentials"),
      el("span", s.sidecar_healthy ? "dot-ok" : "dot-bad", "Sidecar"),
      el("span", s.weather_api_healthy ? "dot-ok" : "dot-bad", "Weather API"),
      el("span", null, `Model ${s.bedrock_model} (${s.aws_region})`),
    );
  } catch (err) {
    document.getElementById("status").textContent = "status unavailable";
  }
}

async function loadConfig() {
  const c = await (await fetch("/api/config")).json();
  document.getElementById("identity").textContent = `Tenant ${c.tenant_id} · Agent ${c.agent_app_id}`;
}

async function send(event) {
  event.preventDefault();
  const input = document.getElementById("message");
  const message = input.value.trim();
  if (!message) return;
  const body = { message, llm_mode: selected("mode"), token_flow: selected("flow") };
  if (body.token_flow === "obo") body.user_token = document.getElementById("user-token").value.trim();
  addMessage("user", message);
  document.getElementById("send").disabled = true;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 120000);
  try {
    const resp = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: abort.signal });
    const r = await resp.json();
    addMessage(r.success ? "agent" : "error", r.success ? r.response : `Error (${resp.status}): ${r.error}`);
    renderTrace(r.debug);
  } catch (err) {
    addMessage("error", `Request failed: ${err.message}`);
  } finally {
    clearTimeout(timer);
    document.getElementById("send").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("ask").addEventListener("submit", send);
  for (const r of document.querySelectorAll('input[name="flow"]')) {
    r.addEventListener("change", () => { document.getElementById("obo-box").hidden = selected("flow") !== "obo"; });
  }
  loadConfig();
  refreshStatus();
  setInterval(refreshStatus, 10000);
});
