// Progressive enhancement only: every page works without JavaScript.  htmx requests carry the session's CSRF
// token (from the page's meta tag) so unsafe htmx requests pass the same check as forms.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
});

// The live inbox: server-sent events from /clinics/{id}/inbox/events.  An event says which conversation
// changed (ids and an urgency, never a name or a message); the page re-reads its list or transcript through
// htmx.  A new handoff also plays a short sound and shows a browser notification once the user allowed them.
(function () {
  var live = document.querySelector("[data-live-url]");
  if (!live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var button = document.getElementById("enable-alerts");
  var audio = null;
  var alertsOn = window.localStorage && localStorage.getItem("medspa-alerts") === "on";

  function say(text) { if (status) { status.textContent = text; } }

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.15;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.25);
    } catch (e) { /* no audio: the notification and the list still say it */ }
  }

  function notify(event) {
    var urgent = event.urgency === "urgent" || event.urgency === "emergency";
    var text = "New " + (event.urgency || "normal") + " handoff";
    document.body.dataset.handoffAlerts = String(Number(document.body.dataset.handoffAlerts || 0) + 1);
    say(text + ": the inbox is updated.");
    if (!alertsOn) { return; }
    beep();
    if (window.Notification && Notification.permission === "granted") {
      var n = new Notification("MedSpa console", {body: text, tag: "handoff", requireInteraction: urgent});
      n.onclick = function () { window.focus(); n.close(); };
    }
  }

  if (button && (window.Notification || window.AudioContext)) {
    button.hidden = alertsOn && (!window.Notification || Notification.permission === "granted");
    button.addEventListener("click", function () {
      alertsOn = true;
      if (window.localStorage) { localStorage.setItem("medspa-alerts", "on"); }
      beep();  // a user gesture unlocks audio for later alerts
      var done = function () { button.hidden = true; say("Alerts are on for new handoffs."); };
      if (window.Notification && Notification.permission === "default") {
        Notification.requestPermission().then(done, done);
      } else { done(); }
    });
  }

  var conversation = live.getAttribute("data-live-conversation");
  var source = new EventSource(live.getAttribute("data-live-url"));
  source.addEventListener("open", function () {
    document.body.dataset.live = "on";
    if (!status || !status.textContent || status.textContent === "Reconnecting…") { say("Live"); }
  });
  source.addEventListener("error", function () { document.body.dataset.live = "off"; say("Reconnecting…"); });
  source.addEventListener("inbox", function (message) {
    var event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    if (conversation) {
      if (String(event.conversation_id) === conversation) {
        htmx.trigger(document.body, "conversation-changed");
      }
    } else {
      htmx.trigger(document.body, "inbox-changed");
    }
    if (event.kind === "handoff") { notify(event); }
  });
})();
