// WebRTC session with the stylecam server: send the camera, receive the styled stream,
// talk JSON on the "control" data channel.

const GATHER_TIMEOUT_MS = 3000;
// a server serving beyond this machine prints its page URL with ?token=...: every request carries it
const TOKEN = new URLSearchParams(location.search).get("token");

// a URL the browser fetches itself (an <img>): the token rides in the query
export function withToken(path) {
  return TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path;
}

export function serverFetch(path, options = {}) {
  const headers = { ...(options.headers || {}), ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) };
  return fetch(path, { ...options, headers });
}

function iceGatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

/**
 * Connect `stream` (the camera) to the server.
 * handlers: onTrack(MediaStream), onMessage(object), onState(string)
 * Returns {send(object), close(), framesDecoded(): Promise<number>, route(): Promise<string|null>}.
 */
export async function connect(stream, { onTrack, onMessage, onState }) {
  // the server's STUN/TURN servers; ?relay=1 in the page URL forces the TURN relay (to check it)
  const { iceServers = [] } = await (await serverFetch("/api/config")).json().catch(() => ({}));
  const relay = new URLSearchParams(location.search).get("relay") === "1";
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relay ? "relay" : "all" });
  const channel = pc.createDataChannel("control");
  const pending = [];
  channel.onopen = () => { while (pending.length) channel.send(pending.shift()); };
  channel.onmessage = (event) => {
    try { onMessage(JSON.parse(event.data)); } catch (err) { console.warn("bad message from server", err); }
  };
  pc.ontrack = (event) => onTrack(event.streams[0] || new MediaStream([event.track]));
  pc.onconnectionstatechange = () => onState(pc.connectionState);
  for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);

  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringDone(pc);
  const response = await serverFetch("/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    pc.close();
    throw new Error(body.error || `server answered ${response.status}`);
  }
  await pc.setRemoteDescription(body);

  return {
    send(message) {
      const text = JSON.stringify(message);
      if (channel.readyState === "open") channel.send(text); else pending.push(text);
    },
    close() {
      channel.close();
      pc.getSenders().forEach((sender) => sender.track && sender.track.stop());
      pc.close();
    },
    async framesDecoded() {
      let total = 0;
      (await pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") total += report.framesDecoded || 0;
      });
      return total;
    },
    // how the media travels: "host" (direct), "srflx" (through NAT, found by STUN) or "relay" (TURN)
    async route() {
      const stats = await pc.getStats();
      let pairId = null;
      stats.forEach((report) => {  // the pair the transport uses; else the nominated one that succeeded
        if (report.type === "transport" && report.selectedCandidatePairId) pairId = report.selectedCandidatePairId;
      });
      if (!pairId) {
        stats.forEach((report) => {
          if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") pairId = report.id;
        });
      }
      const pair = pairId ? stats.get(pairId) : null;
      return (pair && stats.get(pair.localCandidateId)?.candidateType) ?? null;
    },
  };
}
