// The browser side of vfs.widget (vfs/notebook/widget.py): draw a region, show the matches.
// The region travels in the `_region` trait in display pixels; Python decodes and searches.
// The region set and the modes are Python's: the buttons send messages, the traits say what to show.

const REGION_COLOUR = "rgb(255, 72, 0)";

function make(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function button(label, className, title, tool) {
  const node = make("button", className, { type: "button", title });
  node.textContent = label;
  if (tool) node.dataset.tool = tool;
  return node;
}

function render({ model, el }) {
  el.classList.add("vfs-widget");

  const querySide = make("div", "vfs-query");
  const toolbar = make("div", "vfs-toolbar");
  const brushButton = button("Brush", "vfs-tool vfs-active", "Paint the region", "brush");
  const boxButton = button("Box", "vfs-tool", "Drag a rectangle", "box");
  const sizeInput = make("input", "vfs-brush-size", { type: "range", min: "4", max: "120", title: "Brush size" });
  const clearButton = button("Clear", "vfs-clear", "Remove the region");
  const topKLabel = make("label", "vfs-option");
  const topKInput = make("input", "vfs-top-k", { type: "number", min: "1", max: "200", step: "1" });
  topKLabel.append("top ", topKInput);
  const excludeLabel = make("label", "vfs-option", { title: "Leave the query image out of the results" });
  const excludeInput = make("input", "vfs-exclude", { type: "checkbox" });
  excludeLabel.append(excludeInput, " skip query");
  toolbar.append(brushButton, boxButton, sizeInput, clearButton, topKLabel, excludeLabel);

  const stage = make("div", "vfs-stage");
  const picture = make("img", "vfs-query-image", { alt: "query image", draggable: "false" });
  const canvas = make("canvas", "vfs-region");
  stage.append(picture, canvas);
  const queryName = make("div", "vfs-query-name");
  const status = make("div", "vfs-status");
  const error = make("div", "vfs-error");
  const setTools = make("div", "vfs-toolbar vfs-set-tools");
  const addButton = button("+ like this", "vfs-add", "Keep this region in the query and draw another");
  const negativeButton = button("− not like this", "vfs-add-negative", "Push down results that look like this region");
  const regionStrip = make("div", "vfs-set");
  setTools.append(addButton, negativeButton, regionStrip);
  querySide.append(toolbar, stage, queryName, setTools, status, error);

  const results = make("div", "vfs-results");
  const modesPanel = make("div", "vfs-modes");
  const modesButton = button("Modes", "vfs-find-modes", "Group the top matches by what their matched windows look like");
  const modeList = make("div", "vfs-mode-list");
  modesPanel.append(modesButton, modeList);
  el.append(querySide, results, modesPanel);

  const context = canvas.getContext("2d");
  let tool = "brush";
  let drag = null;

  let drawings = 0;

  function sendRegion(region) {
    el.classList.add("vfs-busy");
    status.textContent = "Searching…";
    // numbered, so that a drawing equal to the last one is still a change Python answers
    model.set("_region", region.kind ? { ...region, drawing: ++drawings } : region);
    model.save_changes();
  }

  function canvasPoint(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * canvas.width) / rect.width,
      ((event.clientY - rect.top) * canvas.height) / rect.height,
    ];
  }

  function fillBox(x0, y0, x1, y1) {
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = REGION_COLOUR;
    context.fillRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }

  function strokeTo(x, y) {
    context.strokeStyle = REGION_COLOUR;
    context.lineWidth = model.get("brush_size");
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(drag.x, drag.y);
    context.lineTo(x, y);
    context.stroke();
    drag.x = x;
    drag.y = y;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !model.get("_view").src) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = canvasPoint(event);
    if (tool === "box") {
      // kept so that a click without a drag leaves the region as it was
      drag = { x0: x, y0: y, x1: x, y1: y, before: context.getImageData(0, 0, canvas.width, canvas.height) };
    } else {
      drag = { x, y };
      strokeTo(x, y); // a click paints a dot
    }
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const [x, y] = canvasPoint(event);
    if (tool === "box") {
      drag.x1 = x;
      drag.y1 = y;
      fillBox(drag.x0, drag.y0, x, y);
    } else {
      strokeTo(x, y);
    }
  });

  function finishDrag() {
    if (!drag) return;
    const size = [canvas.width, canvas.height];
    if (tool === "box") {
      const { x0, y0, x1, y1 } = drag;
      if (Math.abs(x1 - x0) < 1 || Math.abs(y1 - y0) < 1) {
        context.putImageData(drag.before, 0, 0);
      } else {
        sendRegion({ kind: "box", box: [x0, y0, x1, y1], size, from: "browser" });
      }
    } else {
      sendRegion({ kind: "mask", png: canvas.toDataURL("image/png"), size, from: "browser" });
    }
    drag = null;
  }
  canvas.addEventListener("pointerup", finishDrag);
  canvas.addEventListener("pointercancel", finishDrag);

  for (const toolButton of [brushButton, boxButton]) {
    toolButton.addEventListener("click", () => {
      tool = toolButton.dataset.tool;
      brushButton.classList.toggle("vfs-active", tool === "brush");
      boxButton.classList.toggle("vfs-active", tool === "box");
    });
  }

  clearButton.addEventListener("click", () => {
    context.clearRect(0, 0, canvas.width, canvas.height);
    if (model.get("_region").kind) sendRegion({});
  });
  addButton.addEventListener("click", () => model.send({ type: "add-region", negative: false }));
  negativeButton.addEventListener("click", () => model.send({ type: "add-region", negative: true }));
  modesButton.addEventListener("click", () => {
    status.textContent = "Finding the modes…";
    model.send({ type: "find-modes" });
  });
  sizeInput.addEventListener("input", () => {
    model.set("brush_size", Number(sizeInput.value));
    model.save_changes();
  });
  topKInput.addEventListener("change", () => {
    const value = Math.max(1, Math.round(Number(topKInput.value)) || 1);
    model.set("top_k", value);
    model.save_changes();
  });
  excludeInput.addEventListener("change", () => {
    model.set("exclude_query", excludeInput.checked);
    model.save_changes();
  });

  function showView() {
    const view = model.get("_view");
    stage.hidden = !view.src;
    if (!view.src) return;
    picture.src = view.src;
    canvas.width = view.width;
    canvas.height = view.height;
    stage.style.maxWidth = `${view.width}px`;
    stage.style.aspectRatio = `${view.width} / ${view.height}`;
    queryName.textContent = view.name;
    queryName.title = view.name;
  }

  function drawRegion(region) {
    const sx = canvas.width / region.size[0];
    const sy = canvas.height / region.size[1];
    if (region.kind === "box") {
      const [x0, y0, x1, y1] = region.box;
      fillBox(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
      return;
    }
    const mask = new Image();
    mask.onload = () => {
      context.clearRect(0, 0, canvas.width, canvas.height);
      context.drawImage(mask, 0, 0, canvas.width, canvas.height);
    };
    mask.src = region.png;
  }

  function showRegion() {
    const region = model.get("_region");
    if (!region || !region.kind) {
      context.clearRect(0, 0, canvas.width, canvas.height);
    } else if (region.from === "python") {
      drawRegion(region); // what the browser drew is on the canvas already
    }
  }

  function showMatches() {
    results.replaceChildren();
    for (const match of model.get("_matches")) {
      const card = make("figure", "vfs-match", { title: `${match.path}\nclick: search with this image` });
      const thumb = make("img", "", { src: match.thumb, alt: match.path });
      const caption = make("figcaption", "");
      caption.textContent = match.caption;
      const path = make("div", "vfs-path");
      path.textContent = match.path;
      card.append(thumb, caption, path);
      card.addEventListener("click", () => model.send({ type: "use-as-query", rank: match.rank }));
      results.append(card);
    }
  }

  function showRegions() {
    regionStrip.replaceChildren();
    model.get("_regions").forEach((region, position) => {
      const item = make("figure", region.negative ? "vfs-set-region vfs-negative" : "vfs-set-region",
                        { title: `${region.negative ? "not like this" : "like this"}: ${region.name}` });
      const remove = button("×", "vfs-remove", "Remove this region from the query");
      remove.addEventListener("click", () => model.send({ type: "remove-region", position }));
      item.append(make("img", "", { src: region.thumb, alt: region.name }), remove);
      regionStrip.append(item);
    });
  }

  function showModes() {
    modeList.replaceChildren();
    const chosen = model.get("_mode");
    model.get("_modes").forEach((mode, position) => {
      const row = make("div", position === chosen ? "vfs-mode vfs-active" : "vfs-mode",
                       { title: position === chosen ? "click: show all matches" : "click: show only this mode" });
      const text = make("div", "vfs-mode-text");
      text.textContent = `Mode ${position + 1} · ${mode.text}`;
      row.append(text, ...mode.thumbs.map((src) => make("img", "", { src, alt: "" })));
      row.addEventListener("click", () => {
        model.set("_mode", position === chosen ? -1 : position);
        model.save_changes();
      });
      modeList.append(row);
    });
  }

  function showStatus() {
    el.classList.remove("vfs-busy");
    status.textContent = model.get("_status");
    error.textContent = model.get("_error");
    error.hidden = !model.get("_error");
  }

  function showOptions() {
    sizeInput.value = String(model.get("brush_size"));
    topKInput.value = String(model.get("top_k"));
    excludeInput.checked = model.get("exclude_query");
  }

  function onMessage(message) {
    if (message && message.type === "searched") showStatus();
  }

  const listeners = [
    ["change:_view", showView],
    ["change:_region", showRegion],
    ["change:_matches", showMatches],
    ["change:_status", showStatus],
    ["change:_error", showStatus],
    ["change:brush_size", showOptions],
    ["change:top_k", showOptions],
    ["change:exclude_query", showOptions],
    ["change:_regions", showRegions],
    ["change:_modes", showModes],
    ["change:_mode", showModes],
    ["msg:custom", onMessage],
  ];
  for (const [name, listener] of listeners) model.on(name, listener);

  showView();
  showOptions();
  showMatches();
  showRegions();
  showModes();
  showStatus();
  // a widget shown again (a second view) starts from the current region
  const initialRegion = model.get("_region");
  if (initialRegion && initialRegion.kind) drawRegion(initialRegion);

  return () => {
    for (const [name, listener] of listeners) model.off(name, listener);
  };
}

export default { render };
