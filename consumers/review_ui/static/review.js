// guardstream review: keyboard triage. No framework, no inline script (the CSP forbids it).
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const page = () => document.body.dataset.page;
  // keys go to the page unless focus is where letters are typed: a ticked checkbox, a radio or a button keeps
  // focus after a click, and u/f/n must still work there
  const NOT_TEXT = /^(checkbox|radio|button|submit|reset|range|color|file|image)$/;
  const typing = (el) => el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName) ||
                                (el.tagName === "INPUT" && !NOT_TEXT.test(el.type)));

  function toggleHelp() {
    const help = document.getElementById("help");
    help.hidden = !help.hidden;
  }
  // Esc dismisses (the help, then focus); it never leaves the page: q is "back"
  function dismiss() {
    const help = document.getElementById("help");
    if (!help.hidden) help.hidden = true;
    else if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  // -- queue: j/k select a row, o/Enter open it, u/f/n label it in place -------------------------
  function rows() { return Array.from(document.querySelectorAll("#queue tbody tr[data-event-id]")); }
  function selected() { return document.querySelector("#queue tr.selected"); }
  function select(row) {
    const cur = selected();
    if (cur) cur.classList.remove("selected");
    if (row) { row.classList.add("selected"); row.scrollIntoView({block: "nearest"}); }
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    const i = all.indexOf(selected());
    select(all[Math.min(all.length - 1, Math.max(0, i < 0 ? 0 : i + step))]);
  }
  async function labelRow(row, label) {
    const body = new URLSearchParams({label: label});
    if (label === "unsafe") {
      for (const c of (row.dataset.categories || "").split(",")) if (c) body.append("categories", c);
    }
    const res = await fetch("/events/" + encodeURIComponent(row.dataset.eventId) + "/labels", {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"},
    });
    const data = await res.json().catch(() => ({ok: false, error: res.statusText}));
    const cell = row.querySelector(".my-label");
    if (data.ok) {
      cell.textContent = {unsafe: "confirmed unsafe", safe: "false positive (safe)", not_sure: "not sure"}[data.label];
      row.classList.add("labelled");
      move(1);
    } else {
      cell.textContent = "error: " + (data.error || res.status);
    }
  }
  function queueKey(ev) {
    const row = selected();
    switch (ev.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": case "Enter": if (row) window.location.href = row.dataset.href; break;
      case "u": if (row) labelRow(row, "unsafe"); break;
      case "f": if (row) labelRow(row, "safe"); break;
      case "n": if (row) labelRow(row, "not_sure"); break;
      default: return false;
    }
    return true;
  }

  // -- event page: u/f/n submit the form, j/k next/previous, / note, q back -----------------------
  function submitLabel(label) {
    const form = document.getElementById("label-form");
    form.requestSubmit(form.querySelector('button[data-label="' + label + '"]'));
  }
  function go(id) { const a = document.getElementById(id); if (a) window.location.href = a.href; }
  function eventKey(ev) {
    switch (ev.key) {
      case "u": submitLabel("unsafe"); break;
      case "f": submitLabel("safe"); break;
      case "n": submitLabel("not_sure"); break;
      case "j": go("next"); break;
      case "k": go("prev"); break;
      case "q": go("back"); break;
      case "/": document.getElementById("note").focus(); break;
      default: return false;
    }
    return true;
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) { if (ev.key === "Escape") ev.target.blur(); return; }
    let handled = false;
    if (ev.key === "?") { toggleHelp(); handled = true; }
    else if (ev.key === "Escape") { dismiss(); handled = true; }
    else if (page() === "queue") handled = queueKey(ev);
    else if (page() === "event") handled = eventKey(ev);
    if (handled) ev.preventDefault();
  });

  document.addEventListener("click", function (ev) {
    const row = ev.target.closest && ev.target.closest("#queue tbody tr[data-event-id]");
    if (row && ev.target.tagName !== "A") select(row);
    if (ev.target.dataset && ev.target.dataset.action === "help") toggleHelp();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (page() === "queue") select(rows()[0] || null);
  });
})();
