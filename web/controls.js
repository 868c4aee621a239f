// The control panel: built from /api/models, reports changes as partial config messages,
// and shows what the server reports (stats, top-5).

import { $, el, pct, top5Items } from "./dom.js";
import { withToken } from "./rtc.js";

function radio(container, selected) {
  for (const button of container.querySelectorAll("button")) {
    button.setAttribute("aria-checked", String(button.dataset.value === selected));
  }
}

/**
 * Build the controls. `models` is /api/models' list; `onChange(partial)` gets
 * {style}, {weights}, {strength}, {saliency} or {opacity} as the user changes them;
 * `onDelete(style)` is asked to delete a learnt style.
 * Returns {config(): full config message, showStats(stats), reset(), solo(style, title), removeStyle(style)}.
 */
export function createControls(models, saliencyMethods, onChange, onDelete) {
  const styleModels = models.filter((m) => m.stylizes);
  const methods = new Set(models.filter((m) => m.kind === "saliency").map((m) => m.method));
  const state = {
    // the blendable multi-style network is the real-time default; single-style ones are heavier
    style: (styleModels.find((m) => m.blends) ?? styleModels[0] ?? { name: null }).name,
    weights: {},
    strength: 1,
    saliency: "off",
    opacity: 0.5,
  };

  // style chips
  const styles = $("styles");
  // a chip is named by its painting (a single-style model) or as the blend of its paintings;
  // the model's file name stays in its tooltip
  const paintingOf = (model, style) => (model.paintings || {})[style] || { title: style, thumbnail: null };
  const thumb = (painting) => el("img", { className: "thumb", src: withToken(painting.thumbnail), alt: "" });
  const chipLabel = (m) => (m.blends ? `Blend of ${m.styles.length} paintings` : paintingOf(m, m.styles[0] ?? m.name).title);
  const choices = [[null, "Original", null, null], ...styleModels.map((m) => [m.name, chipLabel(m), m.precision, m])];
  for (const [name, label, precision, model] of choices) {
    const chip = el("button", { className: "chip", type: "button", textContent: label });
    if (model) chip.dataset.model = model.name;
    if (model && !model.blends && paintingOf(model, model.styles[0]).thumbnail) chip.prepend(thumb(paintingOf(model, model.styles[0])));
    if (precision) {  // which exported variant the server runs (stylecam serve --precision)
      chip.append(el("small", { className: "precision", textContent: ` ${precision}` }));
      chip.title = `${model.name}: the server runs its ${precision} graph`;
    }
    chip.dataset.value = name ?? "";
    chip.setAttribute("role", "radio");
    chip.addEventListener("click", () => {
      state.style = name;
      radio(styles, chip.dataset.value);
      showBlend();
      onChange({ style: name });
    });
    styles.append(chip);
  }
  if (!styleModels.length) styles.append(el("span", { className: "empty", textContent: "No style models installed." }));

  // blend sliders: one per style of the model that blends, named by its painting, with its
  // thumbnail; a learnt one has a delete button
  const sliders = $("blend-sliders");
  function addSlider(model, style, weight, learnt, painting) {
    state.weights[style] = weight;
    const out = el("output", { textContent: pct(weight) });
    const input = el("input", { type: "range", min: 0, max: 1, step: 0.01, value: weight });
    input.dataset.style = style;
    input.dataset.model = model;
    input.addEventListener("input", () => {
      state.weights[style] = Number(input.value);
      out.textContent = pct(input.value);
      onChange({ weights: { [style]: Number(input.value) } });
    });
    const name = el("span", { title: style }, [el("span", { className: "title", textContent: painting.title }), out]);
    if (painting.thumbnail) name.prepend(thumb(painting));
    if (learnt) {
      const remove = el("button", { type: "button", className: "delete", textContent: "×", title: `Delete the learnt style ${painting.title}` });
      remove.addEventListener("click", () => onDelete(style));
      name.append(remove);
    }
    const label = el("label", { className: "slider" }, [name, input]);
    label.dataset.style = style;
    sliders.append(label);
    label.hidden = model !== state.style;
  }
  for (const model of styleModels.filter((m) => m.blends)) {
    model.styles.forEach((style, i) => addSlider(model.name, style, i === 0 ? 1 : 0, (model.learnt || []).includes(style), paintingOf(model, style)));
  }

  const sliderOf = (style) => sliders.querySelector(`label[data-style="${CSS.escape(style)}"]`);

  // the style is the blending model's `style` alone (a learnt one as it forms)
  function solo(style, title) {
    const model = styleModels.find((m) => m.blends);
    if (!model) return;
    const painting = { title: title || style, thumbnail: null };  // its painting is served once it is learnt (painted)
    if (!sliderOf(style)) addSlider(model.name, style, 0, true, painting);
    for (const input of sliders.querySelectorAll("input")) {
      input.value = input.dataset.style === style ? 1 : 0;
      state.weights[input.dataset.style] = Number(input.value);
      input.closest("label").querySelector("output").textContent = pct(input.value);
    }
    state.style = model.name;
    radio(styles, model.name);
    showBlend();
    onChange({ style: model.name, weights: { ...state.weights } });
  }

  // a style just learnt: its slider gets its painting's thumbnail
  function painted(style) {
    const label = sliderOf(style);
    if (label && !label.querySelector("img.thumb")) label.querySelector("span").prepend(thumb({ thumbnail: `/api/styles/${encodeURIComponent(style)}/thumbnail` }));
  }

  function removeStyle(style) {
    const label = sliderOf(style);
    if (label) label.remove();
    delete state.weights[style];
  }

  function showBlend() {
    const model = styleModels.find((m) => m.name === state.style);
    $("blend").hidden = !(model && model.blends);
    for (const input of sliders.querySelectorAll("input")) input.closest("label").hidden = input.dataset.model !== state.style;
  }

  // strength, opacity
  for (const key of ["strength", "opacity"]) {
    const input = $(key);
    input.value = state[key];
    input.addEventListener("input", () => {
      state[key] = Number(input.value);
      $(`${key}-out`).textContent = pct(input.value);
      onChange({ [key]: state[key] });
    });
  }

  // saliency methods
  const saliency = $("saliency");
  for (const { method, label, hint } of [{ method: "off", label: "Off", hint: "No heat map" }, ...saliencyMethods]) {
    const button = el("button", { type: "button", textContent: label, title: hint || "" });
    button.dataset.value = method;
    button.setAttribute("role", "radio");
    button.disabled = method !== "off" && !methods.has(method);
    if (button.disabled) button.title = "No model for this method is installed";
    button.addEventListener("click", () => {
      state.saliency = method;
      radio(saliency, method);
      if (method === "off") showTop5([]);
      onChange({ saliency: method });
    });
    saliency.append(button);
  }

  radio(styles, state.style ?? "");
  radio(saliency, state.saliency);
  showBlend();

  function showTop5(top5) {
    const list = $("top5");
    list.replaceChildren();
    if (!top5.length) {
      list.append(el("li", { className: "empty", textContent: state.saliency === "off" ? "Turn on a saliency method to see the top-5 classes." : "Waiting for the first map…" }));
      return;
    }
    list.append(...top5Items(top5));
  }

  function showStats(stats) {
    $("fps-in").textContent = stats.fps_in.toFixed(0);
    $("fps-out").textContent = stats.fps_out.toFixed(0);
    $("dropped").textContent = String(stats.dropped);
    const chips = Object.entries(stats.ms || {}).map(([stage, ms]) => {
      const chip = el("span", { className: "stage-chip" }, [`${stage} `, el("b", { textContent: ms.toFixed(1) }), " ms"]);
      return chip;
    });
    $("stage-ms").replaceChildren(...chips);
    if (state.saliency !== "off") showTop5(stats.top5 || []);
  }

  function reset() {
    for (const id of ["fps-in", "fps-out", "dropped"]) $(id).textContent = "–";
    $("stage-ms").replaceChildren();
  }

  return {
    config: () => ({ type: "config", ...state, weights: { ...state.weights } }),
    showStats,
    reset,
    solo,
    painted,
    removeStyle,
  };
}
