// Page wiring: camera permission, start/stop, controls <-> control channel, status.
import { connect, serverFetch } from "./rtc.js";
import { createControls } from "./controls.js";
import { $ } from "./dom.js";
import { createLearning } from "./learn.js";
import { createLenses } from "./lenses.js";

let session = null;
let camera = null;
let controls = null;
let lenses = null;

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

function notice(text, kind = "warn") {
  const box = $("notice");
  box.hidden = !text;
  box.textContent = text || "";
  box.classList.toggle("error", kind === "error");
}

function cameraMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera access was denied. Allow the camera for this site (the camera icon in the address bar) and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera and press Start again.";
    case "NotReadableError":
      return "The camera is in use by another application. Close it and press Start again.";
    default:
      return `Could not open the camera: ${err && err.message ? err.message : err}`;
  }
}

async function start() {
  const button = $("start");
  button.disabled = true;
  notice("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    notice("This browser cannot use a camera here: open the page over https or from localhost.", "error");
    setStatus("error", "No camera access");
    button.disabled = false;
    return;
  }
  try {
    setStatus("connecting", "Opening camera…");
    camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 30 }, audio: false });
  } catch (err) {
    notice(cameraMessage(err), "error");
    setStatus("error", "Camera unavailable");
    button.disabled = false;
    return;
  }
  $("local").srcObject = camera;
  $("local").dataset.live = "";
  setStatus("connecting", "Connecting…");
  try {
    session = await connect(camera, {
      onTrack: (stream) => { $("remote").srcObject = stream; $("placeholder").hidden = true; },
      onMessage: (message) => {
        if (message.type === "stats") { controls.showStats(message); lenses.showStats(message); }
        else if (message.type === "lens") lenses.show(message);
        else if (message.type === "error") notice(message.message);
      },
      onState: (state) => {
        if (state === "connected") setStatus("live", "Live");
        else if (state === "failed" || state === "disconnected") { setStatus("error", "Connection lost"); stop(); }
      },
    });
  } catch (err) {
    notice(`Could not connect to the server: ${err.message}`, "error");
    setStatus("error", "Not connected");
    stop();
    button.disabled = false;
    return;
  }
  session.send({ ...controls.config(), ...lenses.config() });
  button.textContent = "Stop";
  button.classList.add("stop");
  button.disabled = false;
}

function stop() {
  if (session) session.close();
  if (camera) camera.getTracks().forEach((track) => track.stop());
  session = camera = null;
  $("remote").srcObject = null;
  $("local").srcObject = null;
  delete $("local").dataset.live;
  $("placeholder").hidden = false;
  controls.reset();
  lenses.reset();
  const button = $("start");
  button.textContent = "Start camera";
  button.classList.remove("stop");
  if ($("status").dataset.state !== "error") setStatus("idle", "Ready");
}

async function init() {
  let models = [];
  let saliencyMethods = [];
  let lensMethods = [];
  try {
    ({ models, saliency_methods: saliencyMethods, lens_methods: lensMethods = [] } = await (await serverFetch("/api/models")).json());
  } catch (err) {
    notice("Cannot reach the stylecam server. Is it running?", "error");
  }
  if (!models.some((m) => m.stylizes)) {
    notice("No style models are installed on the server, so video passes through unchanged. Export one with `stylecam export` into the models directory and restart the server.");
  }
  const send = (partial) => session && session.send({ type: "config", ...partial });
  let learning = null;
  controls = createControls(models, saliencyMethods, send, (style) => learning.remove(style));
  learning = createLearning(controls);
  lenses = createLenses(models, lensMethods, send);
  $("start").addEventListener("click", () => (session || camera ? stop() : start()));
  // For automated checks (and the curious): frames decoded so far, and the media's route.
  window.stylecam = {
    framesDecoded: async () => (session ? session.framesDecoded() : 0),
    route: async () => (session ? session.route() : null),
  };
}

init();
