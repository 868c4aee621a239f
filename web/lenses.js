// The lenses card: the classifier's other views (activations, nearest photos, fooling
// images, DeepDream, and whatever else the server registers). Built from /api/models' lens
// cards and lens_methods (each lens's label and the controls it takes: layer, channel,
// target); reports changes as partial config messages and shows what the server's "lens"
// messages and stats say: a run's note line, its nearest photos, its top-5.
import { $, el, top5Items } from "./dom.js";
import { serverFetch } from "./rtc.js";

/**
 * `models` is /api/models' list, `lensMethods` its lens_methods ({method, label, controls});
 * `onChange(partial)` gets
 * {lens, layer, channel} or {target}. Returns {config(), show(info), showStats(stats), reset()}.
 */
export function createLenses(models, lensMethods, onChange) {
  const lenses = Object.fromEntries(models.filter((m) => m.kind === "lens").map((m) => [m.method, m]));
  const state = { lens: "off", layer: null, channel: -1, target: null };
  const controls = Object.fromEntries(lensMethods.map((m) => [m.method, m.controls || []]));
  let gallery = null; // object URL of a lens's thumbnail picture (its card's options.gallery), fetched once
  let galleryModel = null;

  const buttons = $("lens");
  for (const { method, label } of [{ method: "off", label: "Off" }, ...lensMethods]) {
    const button = el("button", { type: "button", textContent: label });
    button.dataset.value = method;
    button.setAttribute("role", "radio");
    button.disabled = method !== "off" && !lenses[method];
    if (button.disabled) button.title = "No model for this lens is installed";
    button.addEventListener("click", () => choose(method));
    buttons.append(button);
  }

  const layer = $("layer");
  const channel = $("channel");
  layer.addEventListener("change", () => {
    state.layer = Number(layer.value);
    state.channel = -1;
    showChannelRange();
    onChange({ layer: state.layer, channel: -1 });
  });
  channel.addEventListener("input", () => {
    state.channel = Number(channel.value);
    $("channel-out").textContent = state.channel < 0 ? "most active" : `#${state.channel}`;
    onChange({ channel: state.channel });
  });
  $("target").addEventListener("change", () => {
    const name = $("target").value.trim();
    if (!name) return;
    state.target = name;
    onChange({ target: name });
  });

  function layers() {
    return (lenses[state.lens] && lenses[state.lens].options && lenses[state.lens].options.layers) || [];
  }

  function showChannelRange() {
    const spec = layers()[state.layer ?? 0];
    channel.max = String(spec && spec.channels ? spec.channels - 1 : 0);
    channel.value = String(state.channel);
    $("channel-out").textContent = state.channel < 0 ? "most active" : `#${state.channel}`;
  }

  function choose(method) {
    state.lens = method;
    const takes = controls[method] || [];
    const options = takes.includes("layer") ? layers() : [];
    const model = lenses[method];
    const fallback = model && model.options && Number.isInteger(model.options.default_layer) ? model.options.default_layer : Math.floor(options.length / 2);
    state.layer = options.length ? fallback : null;
    state.channel = -1;
    for (const b of buttons.querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.value === method));
    layer.replaceChildren(...options.map((spec, i) => el("option", { value: String(i), textContent: spec.name + (spec.channels ? ` (${spec.channels} ch)` : "") })));
    if (state.layer !== null) layer.value = String(state.layer);
    $("layer-row").hidden = !options.length;
    $("channel-row").hidden = !takes.includes("channel");
    $("target-row").hidden = !takes.includes("target");
    if (takes.includes("channel")) showChannelRange();
    if (takes.includes("target")) loadClasses();
    if (model && model.options && model.options.gallery) loadGallery(model);
    show(null);
    onChange({ lens: method, layer: state.layer, channel: -1 });
  }

  let classesLoaded = false;
  async function loadClasses() {
    if (classesLoaded) return;
    classesLoaded = true;
    try {
      const { classes } = await (await serverFetch("/api/classes")).json();
      $("classes").replaceChildren(...classes.map((name) => el("option", { value: name })));
    } catch (err) {
      classesLoaded = false;
    }
  }

  async function loadGallery(model) {
    if (gallery && galleryModel === model) return;
    try {
      const response = await serverFetch(`/api/models/${encodeURIComponent(model.name)}/gallery`);
      if (response.ok) [gallery, galleryModel] = [URL.createObjectURL(await response.blob()), model];
    } catch (err) {
      gallery = null;
    }
  }

  function thumbnail(index) {
    const options = (galleryModel && galleryModel.options) || {};
    const columns = options.columns || 1;
    const rows = Math.max(1, Math.ceil((options.count || 1) / columns));
    const [col, row] = [index % columns, Math.floor(index / columns)];
    const div = el("div", { className: "thumb" });
    if (gallery) {
      div.style.backgroundImage = `url(${gallery})`;
      div.style.backgroundSize = `${columns * 100}% ${rows * 100}%`;
      div.style.backgroundPosition = `${columns > 1 ? (col / (columns - 1)) * 100 : 0}% ${rows > 1 ? (row / (rows - 1)) * 100 : 0}%`;
    }
    return div;
  }

  /** What one lens run found (a "lens" message, or stats' lens_info); null clears it. */
  function show(info) {
    const note = $("lens-note");
    const neighbors = $("neighbors");
    const top5 = $("lens-top5");
    const mine = info && info.lens === state.lens;
    note.hidden = neighbors.hidden = top5.hidden = true;
    if (!mine) {
      if (state.lens !== "off") { note.hidden = false; note.textContent = "Waiting for the first run…"; }
      return;
    }
    if (info.note) {
      const [before, bold, after] = info.note;
      note.hidden = false;
      note.replaceChildren(`${before} `, el("b", { textContent: bold }), after || "");
    }
    if (info.neighbors) {
      neighbors.hidden = false;
      neighbors.replaceChildren(...info.neighbors.map((n) => el("figure", { title: n.photo }, [thumbnail(n.index), el("figcaption", { textContent: n.similarity.toFixed(2) })])));
    }
    if (info.top5) {
      top5.hidden = false;
      top5.replaceChildren(...top5Items(info.top5));
    }
  }

  function showStats(stats) {
    if (stats.lens_info && stats.lens === state.lens) show({ lens: stats.lens, ...stats.lens_info });
    const rate = $("lens-rate");
    rate.hidden = state.lens === "off" || stats.lens !== state.lens;
    rate.textContent = `${(stats.lens_fps ?? 0).toFixed(1)} runs/s` + (stats.ms && stats.ms.lens ? `, ${stats.ms.lens.toFixed(0)} ms each` : "");
  }

  function reset() {
    show(null);
    $("lens-rate").hidden = true;
  }

  for (const b of buttons.querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.value === "off"));
  return {
    config: () => ({ lens: state.lens, layer: state.layer, channel: state.channel, ...(state.target ? { target: state.target } : {}) }),
    show,
    showStats,
    reset,
  };
}
