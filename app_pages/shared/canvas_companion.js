// The Search page's companion to streamlit-drawable-canvas 0.13 (pinned in pyproject.toml), in the page itself.
// The canvas renders in an open shadow root, out of reach of the page's CSS, and has no option for either of these:
// - its own toolbar (send, undo, redo, edit, reset) is hidden: the page has one set of drawing controls, its Clear,
//   and the toolbar's reset would leave the old results and link in place;
// - a finished stroke is sent at once: the canvas sends a drawing 200 ms after the mouse is released (a fixed
//   debounce), unless its toolbar's send button is pressed, so the companion presses that (hidden) button.
// Both rely on the canvas's class names and the send button's label; tests/app/test_browser.py checks them.

const CANVAS_ROOT = ".dc-root";
const SEND_BUTTON = 'button[aria-label="Update the app with this drawing"]';
const HIDDEN_TOOLBAR = new CSSStyleSheet();
HIDDEN_TOOLBAR.replaceSync(".dc-toolbar { display: none !important; }");

/** The canvas's shadow root an event happened in, or null. */
function canvasRootOf(event) {
  for (const node of event.composedPath()) {
    if (node instanceof ShadowRoot && node.querySelector(CANVAS_ROOT)) return node;
  }
  return null;
}

function hideToolbar(root) {
  if (!root.adoptedStyleSheets.includes(HIDDEN_TOOLBAR)) {
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, HIDDEN_TOOLBAR];
  }
}

function hideEveryToolbar() {
  for (const host of document.querySelectorAll("[data-testid='stBidiComponentIsolated']")) {
    if (host.shadowRoot && host.shadowRoot.querySelector(CANVAS_ROOT)) hideToolbar(host.shadowRoot);
  }
}

// Installed once per browser page (the module is evaluated once; a rerun only calls the default export).
let pressed = null; // the canvas a stroke began on
document.addEventListener("mousedown", (event) => { pressed = canvasRootOf(event); }, true);
document.addEventListener("touchstart", (event) => { pressed = canvasRootOf(event); }, true);
// hovering or tabbing into a canvas that appeared since the last scan hides its toolbar before it can show
document.addEventListener("pointerover", (event) => { const root = canvasRootOf(event); if (root) hideToolbar(root); }, true);
document.addEventListener("focusin", (event) => { const root = canvasRootOf(event); if (root) hideToolbar(root); }, true);

function sendStroke() {
  const root = pressed;
  pressed = null;
  // after the canvas's own mouse-up handling (its stroke is added, then queued for sending in a microtask)
  if (root) setTimeout(() => root.querySelector(SEND_BUTTON)?.click(), 0);
}
window.addEventListener("mouseup", sendStroke);
window.addEventListener("touchend", sendStroke);

export default function () {
  hideEveryToolbar();
  // the canvas may mount just after this element: look again once it has had a frame to load
  requestAnimationFrame(() => setTimeout(hideEveryToolbar, 100));
}
