"use strict";
// Every string that comes from a user or the server is shown with textContent,
// never parsed as HTML.
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, children = []) => {
  const node = Object.assign(document.createElement(tag), props);
  children.forEach((c) => node.append(c));
  return node;
};
let socket = null;
const panes = new Map();

function setStatus(text) { $("status").textContent = text; }

function showLoggedIn(username) {
  $("login-view").hidden = true;
  $("rooms-view").hidden = false;
  $("logout").hidden = false;
  setStatus("signed in as " + username);
}

function showLoggedOut(reason) {
  $("login-view").hidden = false;
  $("rooms-view").hidden = true;
  $("logout").hidden = true;
  $("rooms").replaceChildren();
  panes.forEach((pane) => pane.remove());
  panes.clear();
  setStatus(reason || "signed out");
}

async function start() {
  const me = await fetch("/api/me");
  if (!me.ok) return showLoggedOut();
  const { username } = await me.json();
  showLoggedIn(username);
  await loadRooms();
  connect();
}

async function loadRooms() {
  const res = await fetch("/api/rooms");
  if (!res.ok) return showLoggedOut();
  const rooms = await res.json();
  $("rooms").replaceChildren(...rooms.map((room) => el("li", {}, [
    el("span", { textContent: room.title }),
    el("button", { textContent: "Join", className: "join", onclick: () => send({ command: "join", room: room.id }) }),
  ])));
  $("rooms").querySelectorAll("button").forEach((b, i) => b.dataset.room = rooms[i].id);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/chat/stream/");
  socket.onopen = () => setStatus($("status").textContent.replace(" (offline)", ""));
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = (event) => {
    socket = null;
    if (event.code === 4401 || event.code === 4403) showLoggedOut("signed out: session ended");
  };
}

function send(command) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(command));
}

function pane(room, title) {
  if (panes.has(room)) return panes.get(room);
  const messages = el("div", { className: "messages" });
  const input = el("input", { placeholder: "Message", maxLength: 4096, className: "message-input" });
  const form = el("form", {}, [input, el("button", { textContent: "Send", type: "submit" })]);
  form.onsubmit = (e) => {
    e.preventDefault();
    if (input.value) send({ command: "send", room, message: input.value });
    input.value = "";
  };
  const leave = el("button", { textContent: "Leave", className: "leave", onclick: () => send({ command: "leave", room }) });
  const node = el("section", { className: "pane" }, [el("h2", {}, [el("span", { textContent: title }), leave]), messages, form]);
  node.dataset.room = room;
  $("panes").append(node);
  panes.set(room, node);
  return node;
}

function line(room, parts, className) {
  const node = panes.get(room);
  if (!node) return;
  const messages = node.querySelector(".messages");
  messages.append(el("p", { className: className || "" }, parts));
  messages.scrollTop = messages.scrollHeight;
}

// The token expires soon: take a fresh one (the cookie is renewed too) and
// hand it to the open socket, which keeps its rooms. The user notices nothing.
async function refreshToken() {
  try {
    const response = await fetch("/api/token", { method: "POST", credentials: "same-origin" });
    if (!response.ok) return setStatus("session: cannot renew (" + response.status + ")");
    const { token } = await response.json();
    send({ command: "refresh", token });
  } catch (error) {
    setStatus("session: cannot renew");
  }
}

function receive(frame) {
  if (frame.auth === "expiring") return refreshToken();
  if (frame.auth === "refreshed") return;
  if (frame.error) return setStatus("error: " + frame.error);
  if (frame.join !== undefined) return pane(String(frame.join), frame.title);
  if (frame.leave !== undefined) {
    const node = panes.get(String(frame.leave));
    if (node) { node.remove(); panes.delete(String(frame.leave)); }
    return;
  }
  const room = String(frame.room);
  if (frame.msg_type === 0) {
    line(room, [el("span", { className: "username", textContent: frame.username }), el("span", { className: "text", textContent: frame.message })]);
  } else if (frame.msg_type === 4) {
    line(room, [document.createTextNode(frame.username + " joined")], "notice");
  } else if (frame.msg_type === 5) {
    line(room, [document.createTextNode(frame.username + " left")], "notice");
  }
}

$("login-form").onsubmit = async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  const res = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  if (res.status === 404) {
    // Beside a Django app (serve --django), Django logs users in.
    $("login-error").textContent = "Log in through the Django app, then reload this page.";
    return;
  }
  if (!res.ok) { $("login-error").textContent = "Wrong username or password."; return; }
  $("password").value = "";
  await start();
};

$("logout").onclick = async () => {
  await fetch("/api/logout", { method: "POST" });
  if (socket) socket.close(1000);
  showLoggedOut("signed out");
};

start();
