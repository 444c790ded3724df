// Sign-in form: POST /api/session sets the session cookie, then back to the page that sent us here.
"use strict";

const form = document.getElementById("signin-form");
const status = document.getElementById("signin-status");

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  status.textContent = "Signing in…";
  status.classList.remove("error");
  const response = await fetch("/api/session", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: document.getElementById("user").value, password: document.getElementById("password").value }),
  });
  if (response.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");  // only pages of this server
    return;
  }
  const body = await response.json().catch(() => ({}));
  status.textContent = body.detail || `${response.status} ${response.statusText}`;
  status.classList.add("error");
});
