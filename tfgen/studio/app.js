// The studio page: themes -> Generate / re-roll -> Keep -> download and share. "Your avatars"
// comes from the server (GET /api/me/avatars): the avatars of this browser's owner cookie.
"use strict";

const state = { theme: null, candidate: null, avatar: null, themes: [] };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = data.error || (Array.isArray(data.detail) ? "That request was not understood." : null);
    throw new Error(message || `The studio could not answer (HTTP ${response.status}). Try again in a moment.`);
  }
  return data;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

function capacityText(capacity) {
  if (!capacity || capacity.left === null) return "";
  const left = capacity.left.toLocaleString("en");
  return capacity.bound === "about" ? `about ${left} left` : `more than ${left} left`;
}

async function shareAvatar(item, figure) {
  try {
    const { share_url } = await api("POST", `/api/avatars/${item.avatar}/share`);
    const url = new URL(share_url, window.location.href).href;
    let input = figure.querySelector("input.share");
    if (!input) {
      input = document.createElement("input");
      input.className = "share";
      input.readOnly = true;
      input.setAttribute("aria-label", "share link");
      figure.append(input);
    }
    input.value = url;
    input.select();
    await navigator.clipboard?.writeText(url).catch(() => {});
    say("Share link made: anyone with it can see this avatar (not your others).");
  } catch (error) {
    say(error.message, true);
  }
}

async function showGallery() {
  let kept = [];
  try {
    ({ avatars: kept } = await api("GET", "/api/me/avatars"));
  } catch (error) {
    say(`Could not list your avatars: ${error.message}`, true);
    return;
  }
  $("gallery-empty").hidden = kept.length > 0;
  $("gallery").replaceChildren(...kept.map((item) => {
    const figure = document.createElement("figure");
    const link = document.createElement("a");
    link.href = item.image_url;
    link.download = `avatar-${item.avatar}.png`;
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = `avatar ${item.avatar}`;
    link.append(img);
    const caption = document.createElement("figcaption");
    caption.textContent = item.title;
    const share = document.createElement("button");
    share.className = "share-button";
    share.textContent = "Share";
    share.title = "make a link anyone can open";
    share.addEventListener("click", () => shareAvatar(item, figure));
    figure.append(link, caption, share);
    figure.dataset.avatar = item.avatar;
    return figure;
  }));
}

function chooseTheme(theme) {
  state.theme = theme;
  for (const card of document.querySelectorAll(".card")) {
    card.setAttribute("aria-checked", String(card.dataset.theme === theme.id));
  }
  $("generate").disabled = false;
  $("generate").textContent = "Generate";
  say(`Theme: ${theme.title}. Press Generate.`);
}

async function loadThemes() {
  const { themes, max_download } = await api("GET", "/api/themes");
  state.themes = themes;
  $("themes").replaceChildren(...themes.map((theme) => {
    const card = document.createElement("button");
    card.className = "card";
    card.setAttribute("role", "radio");
    card.setAttribute("aria-checked", "false");
    card.dataset.theme = theme.id;
    const img = document.createElement("img");
    img.src = theme.example_url;
    img.alt = "";
    const title = document.createElement("div");
    title.textContent = theme.title;
    card.append(img, title);
    if (theme.group !== theme.title) {
      const group = document.createElement("div");
      group.className = "group";
      group.textContent = theme.group;
      card.append(group);
    }
    const left = capacityText(theme.capacity);
    if (left) {
      const capacity = document.createElement("div");
      capacity.className = "capacity";
      capacity.textContent = left;
      card.append(capacity);
    }
    card.addEventListener("click", () => chooseTheme(theme));
    return card;
  }));
  const native = themes.length ? themes[0].image_shape[0] : 64;
  const sizes = [...new Set([native, 128, 256, 512, max_download])].filter((s) => s >= native && s <= max_download);
  $("size").replaceChildren(...sizes.map((size) => new Option(`${size} px`, String(size), size === 256, size === 256)));
}

async function generate() {
  if (!state.theme) return;
  $("generate").disabled = true;
  $("keep").disabled = true;
  say("Generating…");
  try {
    const candidate = await api("POST", "/api/candidates", { theme: state.theme.id });
    state.candidate = candidate;
    const img = $("candidate");
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the image did not load"));
      img.src = candidate.image_url;
    });
    img.hidden = false;
    img.alt = `candidate of ${state.theme.title}`;
    img.dataset.candidate = candidate.id;
    $("placeholder").hidden = true;
    $("keep").disabled = false;
    $("generate").textContent = "Re-roll";
    say("Like it? Keep it, or re-roll for another.");
  } catch (error) {
    say(error.message, true);
  } finally {
    $("generate").disabled = false;
  }
}

function updateDownload() {
  if (!state.avatar) return;
  const link = $("download-link");
  link.href = `${state.avatar.image_url}?size=${$("size").value}&resample=${$("resample").value}`;
  link.download = `avatar-${state.avatar.avatar}-${$("size").value}px.png`;
}

async function keep() {
  if (!state.candidate) return;
  $("keep").disabled = true;
  say("Keeping…");
  try {
    const kept = await api("POST", "/api/keep", { candidate: state.candidate.id });
    state.avatar = kept;
    await showGallery();
    $("download").hidden = false;
    updateDownload();
    say("Kept as your avatar. Nobody else will be given it, or one that looks like it.");
  } catch (error) {
    say(error.message, true);
  }
}

$("generate").addEventListener("click", generate);
$("keep").addEventListener("click", keep);
$("size").addEventListener("change", updateDownload);
$("resample").addEventListener("change", updateDownload);
showGallery();
loadThemes().catch((error) => say(`Could not load the themes: ${error.message}`, true));
