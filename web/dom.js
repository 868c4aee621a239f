// Small DOM helpers the page's modules share.

export const $ = (id) => document.getElementById(id);
export const pct = (v) => `${Math.round(v * 100)}%`;

export function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of [].concat(children)) node.append(child);
  return node;
}

/** One <li> per class of a top-5 list [{label, p}], its probability as a bar behind it. */
export function top5Items(top5) {
  return top5.map(({ label, p }) => {
    const bar = el("div", { className: "bar" });
    bar.style.width = pct(p);
    return el("li", {}, [bar, el("span", {}, [el("span", { textContent: label }), el("span", { className: "p", textContent: pct(p) })])]);
  });
}
