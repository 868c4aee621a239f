// Learn a painting: upload it, follow the run, watch the stream take the style as it forms.
import { $ } from "./dom.js";
import { serverFetch } from "./rtc.js";

const POLL_MS = 1000;

/** Wire the "Learn a painting" card; `controls` shows the forming style and removes deleted ones. */
export function createLearning(controls) {
  let polling = null;
  const status = (text, kind = "") => {
    $("learn-status").textContent = text;
    $("learn-status").dataset.kind = kind;
  };
  const busy = (on) => {
    $("learn").disabled = on;
    $("learn-cancel").hidden = !on;
    $("learn-progress").hidden = !on;
  };

  async function learn(file) {
    const name = $("painting-name").value.trim() || file.name.replace(/\.[^.]+$/, "");
    const query = new URLSearchParams({ name, title: name });
    const response = await serverFetch(`/api/styles?${query}`, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
    if (!response.ok) return status(body.error, "error");
    busy(true);
    status(`Learning ${body.title}…`);
    polling = setInterval(follow, POLL_MS);
  }

  async function follow() {
    const job = await (await serverFetch("/api/styles/learning")).json();
    $("learn-progress").max = job.minutes * 60;
    $("learn-progress").value = job.seconds || 0;
    if (job.state === "learning") {
      if (!$("learn").dataset.showing) {
        $("learn").dataset.showing = job.name;
        controls.solo(job.name, job.title);  // the stream shows the style as it forms
      }
      const loss = job.losses.style === undefined ? "from the blend of its styles" : `style loss ${Math.round(job.losses.style)}`;
      status(`Learning ${job.title}: step ${job.step}, ${loss}, about ${Math.ceil(job.seconds_left)} s left`);
    } else if (job.state !== "starting") {
      clearInterval(polling);
      busy(false);
      delete $("learn").dataset.showing;
      if (job.state === "done") {
        controls.painted(job.name);
        status(`Learnt ${job.title}: it is a style now (its slider is under Style).`, "done");
      } else {
        controls.removeStyle(job.name);
        status(job.state === "cancelled" ? "Cancelled." : `Learning failed: ${job.error}`, job.state === "cancelled" ? "" : "error");
      }
    }
  }

  const choose = () => {
    const file = $("painting").files[0];
    if (file) learn(file);
  };
  $("learn").addEventListener("click", choose);
  $("learn-cancel").addEventListener("click", () => serverFetch("/api/styles/learning", { method: "DELETE" }));
  const drop = $("learn-card");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer.files[0]) learn(event.dataTransfer.files[0]);
  });

  return {
    async remove(style) {
      const response = await serverFetch(`/api/styles/${encodeURIComponent(style)}`, { method: "DELETE" });
      if (response.ok) controls.removeStyle(style);
      else status((await response.json()).error, "error");
    },
  };
}
