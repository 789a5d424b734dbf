"use strict";
(function () {
  const embedded = JSON.parse(document.getElementById("interaction-data").textContent);
  const view = document.getElementById("interaction");
  const note = document.getElementById("open-note");

  async function load(id) {
    if (Object.prototype.hasOwnProperty.call(embedded, id)) return embedded[id];
    if (location.protocol === "http:" || location.protocol === "https:") {
      const response = await fetch("/_proxy/report/interaction/" + encodeURIComponent(id));
      if (response.ok) return response.json();
      return null;
    }
    return null;
  }

  function text(tag, value, className) {
    const element = document.createElement(tag);
    element.textContent = value === null || value === undefined ? "\u2013" : String(value);
    if (className) element.className = className;
    return element;
  }

  function render(id, detail) {
    document.getElementById("interaction-id").textContent = id;
    const figures = document.getElementById("interaction-figures");
    figures.replaceChildren();
    for (const [key, value] of Object.entries(detail.figures)) {
      const row = document.createElement("tr");
      row.append(text("th", key), text("td", typeof value === "object" && value !== null ? JSON.stringify(value) : value));
      figures.append(row);
    }
    const timeline = document.getElementById("interaction-timeline");
    if (detail.timeline_svg) {
      timeline.innerHTML = detail.timeline_svg;  // drawn by the proxy (analytics/svg.py), every text escaped
    } else {
      timeline.replaceChildren(text("p", detail.figures.stream
        ? "The cassette is not at hand here (a lake read on another machine?): no timeline."
        : "Not a stream: the answer came in one piece."));
    }
    const conversation = document.getElementById("interaction-conversation");
    conversation.replaceChildren();
    for (const message of detail.conversation) {
      const box = text("div", "", "message " + (message.role.startsWith("assistant") ? "assistant" : ""));
      box.append(text("span", message.role, "role"), document.createTextNode(message.text));
      conversation.append(box);
    }
    view.hidden = false;
    view.scrollIntoView();
  }

  async function open(id) {
    id = id.trim();
    if (!id) return;
    note.textContent = "";
    let detail = null;
    try {
      detail = await load(id);
    } catch (error) {
      detail = null;
    }
    if (detail) {
      render(id, detail);
    } else {
      note.textContent = location.protocol.startsWith("http")
        ? "no interaction " + id
        : id + " is not embedded in this file: open the report served by the proxy (/_proxy/report), or use proxy sql";
    }
  }

  document.addEventListener("click", function (event) {
    const link = event.target.closest("[data-id]");
    if (link) {
      event.preventDefault();
      history.replaceState(null, "", "#i=" + encodeURIComponent(link.dataset.id));
      open(link.dataset.id);
    }
  });
  document.getElementById("open-form").addEventListener("submit", function (event) {
    event.preventDefault();
    open(document.getElementById("open-id").value);
  });
  document.getElementById("interaction-close").addEventListener("click", function () {
    view.hidden = true;
  });
  if (location.hash.startsWith("#i=")) open(decodeURIComponent(location.hash.slice(3)));
})();
