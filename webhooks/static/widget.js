/*
 * MedSpa Agent web chat widget.
 *
 * Embed on a clinic site with:
 *   <script src="https://HOST/widget.js" data-clinic-key="glow-medspa-public" async></script>
 *
 * Optional attributes on the script tag:
 *   data-api-base      override the API origin (default: the origin this script was served from)
 *   data-clinic-name   launcher label before the first session call (default: cached name or "Open chat")
 *   data-accent-color  hex colour for the launcher, header and user bubbles (e.g. "#8a4f7d")
 *
 * Why it is written this way:
 *   - one IIFE, ES2017, no dependencies and no build step, so a clinic can paste one tag;
 *   - every piece of message text is set with textContent (never HTML parsing), and links are
 *     built element by element after checking the scheme, so patient or model text can never
 *     inject markup into the host page;
 *   - a message keeps its browser-generated client_message_id across retries so the server can
 *     dedupe (exactly one turn per message), and sends go out one at a time to keep order;
 *   - the session starts lazily on first open, so page views that never chat create nothing.
 */
(function () {
  'use strict';

  var ROOT_ID = 'msa-root';
  if (typeof window === 'undefined' || window.__msaWidgetLoaded) {
    return;
  }
  window.__msaWidgetLoaded = true;

  // ---------------------------------------------------------------- configuration

  var script = document.currentScript || document.querySelector('script[data-clinic-key]');
  if (!script) {
    return;
  }
  var clinicKey = script.getAttribute('data-clinic-key') || '';
  if (!clinicKey) {
    if (window.console) { window.console.warn('[msa] data-clinic-key is missing; chat widget disabled.'); }
    return;
  }

  function originOf(url) {
    try {
      return new URL(url, window.location.href).origin;
    } catch (e) {
      return window.location.origin;
    }
  }

  var apiBase = (script.getAttribute('data-api-base') || originOf(script.src || window.location.href)).replace(/\/+$/, '');
  var SESSION_URL = apiBase + '/webhooks/chat/session';
  var MESSAGES_URL = apiBase + '/webhooks/chat/messages';
  var STREAM_URL = apiBase + '/webhooks/chat/stream';
  var STREAM_TICKET_URL = apiBase + '/webhooks/chat/stream-ticket';
  var HANDOVER_URL = apiBase + '/webhooks/chat/handover';
  var CSS_URL = apiBase + '/widget.css';
  var STORAGE_KEY = 'msa-session:' + clinicKey;

  var FETCH_TIMEOUT_MS = 15000;
  var TYPING_SAFETY_MS = 60000;
  var STREAM_MAX_BACKOFF_MS = 30000;
  var SEND_MAX_ATTEMPTS = 8;
  var MAX_INPUT_CHARS = 2000;

  var TEXT = {
    openChat: 'Open chat',
    openChatWith: 'Open chat with ',
    close: 'Close chat',
    message: 'Message',
    send: 'Send',
    typing: 'Assistant is typing',
    staff: 'Staff',
    connecting: 'Connecting…',
    emptyState: 'Hi! Ask us about treatments, prices or booking an appointment.',
    forbidden: "Sorry — chat isn't available on this page. Please call or email the clinic and we'll be glad to help.",
    connectFailed: "We couldn't connect to chat. Please check your connection and try again.",
    retry: 'Try again',
    tooFast: "You're sending messages quickly — please wait a moment.",
    sending: 'Sending…',
    notSent: 'Not sent.',
    retrySend: 'Retry',
    sendFailed: "Your message couldn't be sent. Tap Retry to try again.",
    newConversation: 'Your previous chat session ended — this is a new conversation.',
    continueByText: 'Continue by text',
    phoneLabel: 'Mobile number',
    textMe: 'Text me',
    cancel: 'Cancel',
    handoverThanks: "Thanks — we'll text you shortly.",
    handoverNeedConsent: 'Please tick the box to agree to receive text messages.',
    handoverBadPhone: 'Please enter a valid mobile number.',
    handoverFailed: "Sorry, we couldn't set that up. Please try again.",
    suggested: 'Suggested replies',
    newMessages: ' new message',
  };

  function consentTextFor(name) {
    return 'I agree to receive text messages from ' + name +
      ' about my request. Msg & data rates may apply. Reply STOP to opt out.';
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    var key;
    if (attrs) {
      for (key in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, key) && attrs[key] !== null && attrs[key] !== undefined) {
          if (key === 'text') {
            node.textContent = String(attrs[key]);
          } else {
            node.setAttribute(key, String(attrs[key]));
          }
        }
      }
    }
    if (children) {
      children.forEach(function (child) {
        if (child) { node.appendChild(child); }
      });
    }
    return node;
  }

  function svgIcon(pathData, size) {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', String(size));
    svg.setAttribute('height', String(size));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    // Inline size so host rules such as `svg { width: 100% }` can't resize our icons.
    svg.style.width = size + 'px';
    svg.style.height = size + 'px';
    svg.style.display = 'block';
    svg.style.flex = '0 0 auto';
    var path = document.createElementNS(ns, 'path');
    path.setAttribute('d', pathData);
    path.setAttribute('fill', 'currentColor');
    svg.appendChild(path);
    return svg;
  }

  var ICON_CHAT = 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8.4L4.7 21.3A1 1 0 0 1 3 20.6V6a2 2 0 0 1 1-2zm3 5.5a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z';
  var ICON_CLOSE = 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z';
  var ICON_SEND = 'M3.4 20.4 21.9 12.6a.7.7 0 0 0 0-1.2L3.4 3.6a.7.7 0 0 0-1 .8L4.6 11l9.4 1-9.4 1-2.2 6.6a.7.7 0 0 0 1 .8z';

  function sleep(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  function uuid4() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      return c.randomUUID();
    }
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < 16; i++) { bytes[i] = Math.floor(Math.random() * 256); }
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join('');
    return hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-' + hex.slice(12, 16) + '-' + hex.slice(16, 20) + '-' + hex.slice(20);
  }

  function storageGet() {
    try {
      var raw = window.localStorage.getItem(STORAGE_KEY);
      if (!raw) { return null; }
      var data = JSON.parse(raw);
      if (!data || data.clinic_key !== clinicKey || typeof data.token !== 'string') { return null; }
      return data;
    } catch (e) {
      return null;
    }
  }

  function storageSet(data) {
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify(data));
    } catch (e) {
      // Private mode or storage full: the chat still works, it just won't survive a reload.
    }
  }

  function storageClear() {
    try { window.localStorage.removeItem(STORAGE_KEY); } catch (e) { /* ignore */ }
  }

  function isExpired(expiresAt, marginMs) {
    if (!expiresAt) { return false; }
    var t = Date.parse(expiresAt);
    if (isNaN(t)) { return false; }
    return t - (marginMs || 0) <= Date.now();
  }

  /** Seconds from a Retry-After header (delta-seconds or HTTP date), clamped to 1..60. */
  function retryAfterMs(header) {
    var secs = 5;
    if (header) {
      var n = Number(header);
      if (!isNaN(n)) {
        secs = n;
      } else {
        var when = Date.parse(header);
        if (!isNaN(when)) { secs = (when - Date.now()) / 1000; }
      }
    }
    return Math.min(60, Math.max(1, secs)) * 1000;
  }

  /** fetch with a timeout; resolves to {status, headers, data} and never throws for HTTP errors. */
  function request(url, method, body, token) {
    var headers = { 'Content-Type': 'application/json', 'Accept': 'application/json' };
    if (token) { headers.Authorization = 'Bearer ' + token; }
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS) : null;
    return window.fetch(url, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      mode: 'cors',
      credentials: 'omit',
      cache: 'no-store',
      signal: controller ? controller.signal : undefined,
    }).then(function (res) {
      return res.text().then(function (raw) {
        var data = null;
        if (raw) {
          try { data = JSON.parse(raw); } catch (e) { data = null; }
        }
        return { status: res.status, headers: res.headers, data: data };
      });
    }).then(function (result) {
      if (timer) { window.clearTimeout(timer); }
      return result;
    }, function (err) {
      if (timer) { window.clearTimeout(timer); }
      return { status: 0, headers: null, data: null, error: err };
    });
  }

  function errorMessageOf(result, fallback) {
    if (result && result.data && typeof result.data.error === 'string' && result.data.error) {
      return result.data.error;
    }
    if (result && result.data && typeof result.data.detail === 'string' && result.data.detail) {
      return result.data.detail;
    }
    return fallback;
  }

  // ---------------------------------------------------------------- safe text rendering

  var URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  var TRAILING_PUNCT_RE = /[.,;:!?'"\]]+$/;

  /** Trim sentence punctuation and an unbalanced closing parenthesis off a matched URL. */
  function trimUrl(candidate) {
    var url = candidate.replace(TRAILING_PUNCT_RE, '');
    while (url.charAt(url.length - 1) === ')' &&
           (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
      url = url.slice(0, -1).replace(TRAILING_PUNCT_RE, '');
    }
    return url;
  }

  function safeHref(candidate) {
    try {
      var parsed = new URL(candidate);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
        return parsed.href;
      }
    } catch (e) { /* not a URL */ }
    return null;
  }

  /**
   * Append `text` to `parent` as text nodes; when `linkify` is set, http(s) URLs become <a>
   * elements whose href is assigned only after the scheme check.
   */
  function appendRichText(parent, text, linkify) {
    if (!linkify) {
      parent.appendChild(document.createTextNode(text));
      return;
    }
    var last = 0;
    var match;
    URL_RE.lastIndex = 0;
    while ((match = URL_RE.exec(text)) !== null) {
      var raw = trimUrl(match[0]);
      var href = safeHref(raw);
      if (!href) { continue; }
      if (match.index > last) {
        parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      }
      var a = document.createElement('a');
      a.className = 'msa-link';
      a.textContent = raw;
      a.setAttribute('href', href);
      a.setAttribute('target', '_blank');
      a.setAttribute('rel', 'noopener noreferrer');
      parent.appendChild(a);
      last = match.index + raw.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) {
      parent.appendChild(document.createTextNode(text.slice(last)));
    }
  }

  // ---------------------------------------------------------------- state

  var state = {
    token: null,
    expiresAt: null,
    conversationId: null,
    clinicName: null,
    sessionPromise: null,
    sessionFailed: false,
    blocked: false,
    seenIds: {},
    lastEventId: null,
    streamTicket: null,
    streamTicketExpiresAt: null,
    tokenRejected: false,
    esAttempt: 0,
    esConnecting: false,
    es: null,
    esFailures: 0,
    esTimer: null,
    isOpen: false,
    unread: 0,
    queue: [],
    pumping: false,
    typingTimer: null,
    noticeTimer: null,
  };

  var stored = storageGet();
  if (stored && stored.clinic_name) { state.clinicName = String(stored.clinic_name); }

  // ---------------------------------------------------------------- DOM

  var ui = {};

  function buildUi() {
    var root = el('div', { id: ROOT_ID, 'class': 'msa-root', 'data-msa-version': '1' });
    // Hidden until our stylesheet has loaded, so the host page never flashes unstyled widget markup.
    root.style.visibility = 'hidden';

    var accent = script.getAttribute('data-accent-color');
    if (accent && /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(accent)) {
      root.style.setProperty('--msa-accent', accent);
    }

    ui.badge = el('span', { 'class': 'msa-badge', 'aria-hidden': 'true', hidden: '' });
    ui.launcher = el('button', {
      type: 'button',
      'class': 'msa-launcher',
      'data-testid': 'msa-launcher',
      'aria-expanded': 'false',
      'aria-controls': 'msa-panel',
    }, [svgIcon(ICON_CHAT, 28), ui.badge]);

    ui.title = el('h2', { id: 'msa-title', 'class': 'msa-title', text: state.clinicName || 'Chat' });
    ui.subtitle = el('p', { 'class': 'msa-subtitle', text: 'We typically reply in a few seconds' });
    ui.close = el('button', {
      type: 'button',
      'class': 'msa-close',
      'data-testid': 'msa-close',
      'aria-label': TEXT.close,
    }, [svgIcon(ICON_CLOSE, 20)]);
    var header = el('div', { 'class': 'msa-header' }, [
      el('div', { 'class': 'msa-header-text' }, [ui.title, ui.subtitle]),
      ui.close,
    ]);

    ui.error = el('div', { 'class': 'msa-error', 'data-testid': 'msa-error', role: 'alert', hidden: '' });
    ui.errorText = el('span', { 'class': 'msa-error-text' });
    // The retry button is attached only while offered, so the banner's text is just the message.
    ui.errorRetry = el('button', { type: 'button', 'class': 'msa-error-retry', text: TEXT.retry });
    ui.error.appendChild(ui.errorText);

    ui.empty = el('p', { 'class': 'msa-empty', text: TEXT.connecting });
    ui.log = el('div', {
      'class': 'msa-log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      'aria-labelledby': 'msa-title',
      tabindex: '0',
    });
    ui.typing = el('div', {
      'class': 'msa-typing',
      'data-testid': 'msa-typing',
      role: 'status',
      'aria-label': TEXT.typing,
      hidden: '',
    }, [
      el('span', { 'class': 'msa-dot', 'aria-hidden': 'true' }),
      el('span', { 'class': 'msa-dot', 'aria-hidden': 'true' }),
      el('span', { 'class': 'msa-dot', 'aria-hidden': 'true' }),
    ]);
    var scroller = el('div', { 'class': 'msa-scroller' }, [ui.empty, ui.log, ui.typing]);
    ui.scroller = scroller;

    ui.input = el('textarea', {
      'class': 'msa-input',
      'data-testid': 'msa-input',
      'aria-label': TEXT.message,
      placeholder: 'Type your message…',
      rows: '1',
      maxlength: String(MAX_INPUT_CHARS),
      autocomplete: 'off',
    });
    ui.send = el('button', {
      type: 'submit',
      'class': 'msa-send',
      'data-testid': 'msa-send',
      'aria-label': TEXT.send,
    }, [svgIcon(ICON_SEND, 20)]);
    ui.composer = el('form', { 'class': 'msa-composer', novalidate: '' }, [ui.input, ui.send]);

    ui.handover = buildHandover();
    ui.handoverLink = el('button', {
      type: 'button',
      'class': 'msa-linkbtn',
      'data-testid': 'msa-handover-link',
      'aria-expanded': 'false',
      'aria-controls': 'msa-handover',
      text: TEXT.continueByText,
      disabled: '',
    });
    var footer = el('div', { 'class': 'msa-footer' }, [ui.handoverLink]);

    ui.panel = el('div', {
      id: 'msa-panel',
      'class': 'msa-panel',
      'data-testid': 'msa-panel',
      role: 'dialog',
      'aria-modal': 'false',
      'aria-labelledby': 'msa-title',
      hidden: '',
    }, [header, ui.error, scroller, ui.handover, ui.composer, footer]);

    root.appendChild(ui.panel);
    root.appendChild(ui.launcher);
    ui.root = root;
    updateLauncherLabel();

    ui.launcher.addEventListener('click', function () {
      if (state.isOpen) { closePanel(); } else { openPanel(); }
    });
    ui.close.addEventListener('click', closePanel);
    ui.panel.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' || ev.key === 'Esc') {
        ev.preventDefault();
        closePanel();
      }
    });
    ui.composer.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submitInput();
    });
    ui.input.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        submitInput();
      }
    });
    ui.input.addEventListener('input', autosizeInput);
    ui.errorRetry.addEventListener('click', function () {
      hideError();
      state.sessionFailed = false;
      ensureSession().then(function (ok) {
        if (ok) { connectStream(); pump(); }
      });
    });
    ui.handoverLink.addEventListener('click', function () {
      if (ui.handover.hidden) { showHandover(); } else { hideHandover(); }
    });

    return root;
  }

  function updateLauncherLabel() {
    var label = state.clinicName ? TEXT.openChatWith + state.clinicName
      : (script.getAttribute('data-clinic-name') ? TEXT.openChatWith + script.getAttribute('data-clinic-name') : TEXT.openChat);
    if (state.unread > 0) {
      label += ' (' + state.unread + TEXT.newMessages + (state.unread === 1 ? '' : 's') + ')';
    }
    ui.launcher.setAttribute('aria-label', label);
    if (state.unread > 0) {
      ui.badge.textContent = state.unread > 9 ? '9+' : String(state.unread);
      ui.badge.hidden = false;
    } else {
      ui.badge.textContent = '';
      ui.badge.hidden = true;
    }
  }

  function autosizeInput() {
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
  }

  function showError(message, withRetry) {
    window.clearTimeout(state.noticeTimer);
    ui.errorText.textContent = message;
    if (withRetry) {
      ui.error.appendChild(ui.errorRetry);
    } else if (ui.errorRetry.parentNode) {
      ui.error.removeChild(ui.errorRetry);
    }
    ui.error.hidden = false;
  }

  function hideError() {
    ui.errorText.textContent = '';
    if (ui.errorRetry.parentNode) { ui.error.removeChild(ui.errorRetry); }
    ui.error.hidden = true;
  }

  /** A transient notice (e.g. rate limited) that clears itself unless replaced. */
  function showNotice(message, ms) {
    showError(message, false);
    state.noticeTimer = window.setTimeout(function () {
      if (ui.errorText.textContent === message) { hideError(); }
    }, ms);
  }

  function setComposerEnabled(enabled) {
    ui.input.disabled = !enabled;
    ui.send.disabled = !enabled;
  }

  function isNearBottom() {
    var s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }

  // ---------------------------------------------------------------- open / close

  function openPanel() {
    if (state.isOpen) { return; }
    state.isOpen = true;
    ui.panel.hidden = false;
    ui.root.classList.add('msa-root--open');
    ui.launcher.setAttribute('aria-expanded', 'true');
    state.unread = 0;
    updateLauncherLabel();
    scrollToBottom();
    if (!ui.input.disabled) {
      ui.input.focus();
    } else {
      ui.close.focus();
    }
    if (!state.token && !state.blocked) {
      ensureSession().then(function (ok) {
        if (ok) { connectStream(); }
      });
    }
  }

  function closePanel() {
    if (!state.isOpen) { return; }
    state.isOpen = false;
    ui.panel.hidden = true;
    ui.root.classList.remove('msa-root--open');
    ui.launcher.setAttribute('aria-expanded', 'false');
    ui.launcher.focus();
  }

  // ---------------------------------------------------------------- messages

  function normaliseRole(role) {
    return role === 'user' || role === 'staff' ? role : 'assistant';
  }

  function formatTime(iso) {
    if (!iso) { return null; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return null; }
    try {
      return d.toLocaleString(undefined, { weekday: 'short', hour: 'numeric', minute: '2-digit' });
    } catch (e) {
      return d.toString();
    }
  }

  function disableChips(scope) {
    var chips = scope.querySelectorAll('.msa-chip');
    for (var i = 0; i < chips.length; i++) {
      chips[i].disabled = true;
    }
  }

  function buildChips(quickReplies, messageEl) {
    var group = el('div', { 'class': 'msa-chips', role: 'group', 'aria-label': TEXT.suggested });
    quickReplies.forEach(function (qr) {
      if (!qr) { return; }
      var label = typeof qr.label === 'string' ? qr.label : (typeof qr.value === 'string' ? qr.value : '');
      var value = typeof qr.value === 'string' ? qr.value : label;
      if (!label || !value) { return; }
      var chip = el('button', { type: 'button', 'class': 'msa-chip', 'data-testid': 'msa-chip', text: label });
      chip.addEventListener('click', function () {
        if (chip.disabled) { return; }
        disableChips(messageEl);
        chip.classList.add('msa-chip--chosen');
        sendText(value);
      });
      group.appendChild(chip);
    });
    return group.childNodes.length ? group : null;
  }

  /**
   * Build one message row. All text goes through textContent / text nodes; assistant and staff
   * messages get http(s) links as real anchors.
   */
  function buildMessage(msg) {
    var role = normaliseRole(msg.role);
    var row = el('div', {
      'class': 'msa-msg msa-msg--' + role,
      'data-testid': 'msa-message',
      'data-role': role,
      'data-id': msg.id ? String(msg.id) : null,
    });
    if (role === 'staff') {
      row.appendChild(el('span', { 'class': 'msa-tag', text: TEXT.staff }));
    }
    var bubble = el('div', { 'class': 'msa-bubble' });
    var when = formatTime(msg.at);
    if (when) { bubble.setAttribute('title', when); }
    appendRichText(bubble, typeof msg.text === 'string' ? msg.text : String(msg.text || ''), role !== 'user');
    row.appendChild(bubble);
    if (role !== 'user' && Array.isArray(msg.quick_replies) && msg.quick_replies.length) {
      var chips = buildChips(msg.quick_replies, row);
      if (chips) { row.appendChild(chips); }
    }
    return row;
  }

  function markSeen(id) {
    if (id !== undefined && id !== null && id !== '') { state.seenIds[String(id)] = true; }
  }

  function hasSeen(id) {
    return id !== undefined && id !== null && id !== '' && state.seenIds[String(id)] === true;
  }

  function hideEmptyState() {
    ui.empty.hidden = true;
  }

  /** Render a server message (history or stream) once, deduped by id. Returns true if rendered. */
  function renderServerMessage(msg) {
    if (!msg || typeof msg !== 'object') { return false; }
    if (hasSeen(msg.id)) { return false; }
    markSeen(msg.id);
    var stick = isNearBottom();
    var row = buildMessage(msg);
    if (normaliseRole(msg.role) === 'user') {
      // The user has moved on from any earlier suggestions.
      disableChips(ui.log);
    }
    ui.log.appendChild(row);
    hideEmptyState();
    if (stick) { scrollToBottom(); }
    return true;
  }

  function renderNotice(text) {
    ui.log.appendChild(el('p', { 'class': 'msa-notice', text: text }));
  }

  /** A locally typed message, shown right away and tracked until the server accepts it. */
  function renderLocalUserMessage(item) {
    var row = buildMessage({ role: 'user', text: item.text });
    row.setAttribute('data-client-id', item.clientId);
    row.classList.add('msa-msg--pending');
    var status = el('div', { 'class': 'msa-status', 'aria-live': 'off' });
    status.appendChild(el('span', { text: TEXT.sending }));
    row.appendChild(status);
    item.row = row;
    item.status = status;
    disableChips(ui.log);
    ui.log.appendChild(row);
    hideEmptyState();
    scrollToBottom();
  }

  function setItemStatus(item, kind) {
    if (!item.row) { return; }
    var status = item.status;
    while (status.firstChild) { status.removeChild(status.firstChild); }
    item.row.classList.remove('msa-msg--pending');
    item.row.classList.remove('msa-msg--failed');
    if (kind === 'sent') {
      item.row.removeChild(status);
      item.status = null;
      return;
    }
    if (kind === 'pending') {
      item.row.classList.add('msa-msg--pending');
      status.appendChild(el('span', { text: TEXT.sending }));
      return;
    }
    item.row.classList.add('msa-msg--failed');
    status.appendChild(el('span', { text: TEXT.notSent + ' ' }));
    var retry = el('button', { type: 'button', 'class': 'msa-linkbtn msa-retry', text: TEXT.retrySend });
    retry.addEventListener('click', function () {
      item.attempts = 0;
      item.renewed = false;
      item.failed = false;
      setItemStatus(item, 'pending');
      state.queue.push(item);
      showTyping(true);
      pump();
    });
    status.appendChild(retry);
  }

  // ---------------------------------------------------------------- typing indicator

  function showTyping(on) {
    window.clearTimeout(state.typingTimer);
    if (on) {
      var stick = isNearBottom();
      ui.typing.hidden = false;
      if (stick) { scrollToBottom(); }
      // Never leave the dots spinning forever if a reply or "typing off" gets lost.
      state.typingTimer = window.setTimeout(function () { ui.typing.hidden = true; }, TYPING_SAFETY_MS);
    } else {
      ui.typing.hidden = true;
    }
  }

  // ---------------------------------------------------------------- session

  /**
   * Get a session (resuming the stored one when it is still valid). One call in flight at a time;
   * resolves true when a token is available.
   */
  function ensureSession(forceRenew) {
    if (state.blocked) { return Promise.resolve(false); }
    if (state.token && !forceRenew && !isExpired(state.expiresAt, 5000)) { return Promise.resolve(true); }
    if (state.sessionPromise) { return state.sessionPromise; }
    state.sessionPromise = startSession().then(function (ok) {
      state.sessionPromise = null;
      return ok;
    }, function () {
      state.sessionPromise = null;
      return false;
    });
    return state.sessionPromise;
  }

  function startSession() {
    var oldToken = state.token;
    var saved = storageGet();
    if (!oldToken && saved && !isExpired(saved.expires_at, 5000)) {
      oldToken = saved.token;
    }
    var body = { clinic_key: clinicKey };
    if (oldToken) { body.session_token = oldToken; }
    return request(SESSION_URL, 'POST', body).then(function (res) {
      if (oldToken && (res.status === 400 || res.status === 401)) {
        // The old token is no longer accepted: start fresh.
        storageClear();
        return request(SESSION_URL, 'POST', { clinic_key: clinicKey });
      }
      return res;
    }).then(function (res) {
      if (res.status === 200 && res.data && typeof res.data.session_token === 'string') {
        applySession(res.data);
        return true;
      }
      if (res.status === 403) {
        state.blocked = true;
        ui.empty.hidden = true;
        var inputHadFocus = document.activeElement === ui.input;
        setComposerEnabled(false);
        ui.handoverLink.disabled = true;
        showError(TEXT.forbidden, false);
        if (inputHadFocus && state.isOpen) { ui.close.focus(); }
        return false;
      }
      state.sessionFailed = true;
      ui.empty.hidden = true;
      showError(TEXT.connectFailed, true);
      return false;
    });
  }

  function applySession(data) {
    var previousConversation = state.conversationId;
    state.token = data.session_token;
    state.expiresAt = typeof data.expires_at === 'string' ? data.expires_at : null;
    state.conversationId = data.conversation_id === undefined ? null : data.conversation_id;
    state.sessionFailed = false;
    state.tokenRejected = false;
    state.streamTicket = typeof data.stream_ticket === 'string' ? data.stream_ticket : null;
    state.streamTicketExpiresAt = typeof data.stream_ticket_expires_at === 'string' ? data.stream_ticket_expires_at : null;
    if (typeof data.clinic_name === 'string' && data.clinic_name) {
      state.clinicName = data.clinic_name;
    }
    storageSet({
      token: state.token,
      expires_at: state.expiresAt,
      clinic_key: clinicKey,
      clinic_name: state.clinicName,
    });
    ui.title.textContent = state.clinicName || 'Chat';
    updateLauncherLabel();
    updateConsentText();
    ui.handoverLink.disabled = false;
    hideError();

    var history = Array.isArray(data.history) ? data.history : [];
    var sameConversation = previousConversation !== null && previousConversation === state.conversationId;
    if (sameConversation) {
      // Resumed after a renewal: rebuild from the server's history (which now holds the accepted
      // user messages under server ids), keeping messages that are still waiting to be sent.
      var keep = [];
      var rows = ui.log.querySelectorAll('[data-client-id]');
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].classList.contains('msa-msg--pending') || rows[i].classList.contains('msa-msg--failed')) {
          keep.push(rows[i]);
        }
      }
      while (ui.log.firstChild) { ui.log.removeChild(ui.log.firstChild); }
      state.seenIds = {};
      history.forEach(renderServerMessage);
      keep.forEach(function (row) { ui.log.appendChild(row); });
    } else {
      if (previousConversation !== null && ui.log.childNodes.length) {
        disableChips(ui.log);
        renderNotice(TEXT.newConversation);
      }
      history.forEach(renderServerMessage);
    }
    if (history.length) {
      var lastId = history[history.length - 1] && history[history.length - 1].id;
      if (lastId !== undefined && lastId !== null) { state.lastEventId = String(lastId); }
    }
    ui.empty.textContent = TEXT.emptyState;
    ui.empty.hidden = ui.log.childNodes.length > 0;
    scrollToBottom();
  }

  // ---------------------------------------------------------------- stream (SSE)

  /**
   * A short-lived ticket for the stream URL. EventSource cannot send an Authorization header, and the
   * long-lived session token must never appear in a URL (server logs, proxies, history): the token is
   * traded for a ticket in a POST instead. Resolves to the ticket, or null.
   */
  function takeStreamTicket() {
    var ticket = state.streamTicket;
    state.streamTicket = null;  // the session's ticket is used once; reconnects ask for a fresh one
    if (ticket && !isExpired(state.streamTicketExpiresAt, 5000)) { return Promise.resolve(ticket); }
    return request(STREAM_TICKET_URL, 'POST', {}, state.token).then(function (res) {
      if (res.status === 200 && res.data && typeof res.data.ticket === 'string') { return res.data.ticket; }
      if (res.status === 401) { state.tokenRejected = true; }  // ended or revoked: renew before the next try
      return null;
    });
  }

  function connectStream() {
    if (!state.token || typeof window.EventSource !== 'function') { return; }
    closeStream();
    var attempt = state.esAttempt;
    state.esConnecting = true;
    takeStreamTicket().then(function (ticket) {
      if (attempt !== state.esAttempt) { return; }  // closed or superseded meanwhile
      state.esConnecting = false;
      if (!ticket) {
        scheduleReconnect();
        return;
      }
      var url = STREAM_URL + '?ticket=' + encodeURIComponent(ticket);
      if (state.lastEventId) { url += '&last_event_id=' + encodeURIComponent(state.lastEventId); }
      var es = new window.EventSource(url);
      state.es = es;
      es.onopen = function () {
        state.esFailures = 0;
      };
      es.addEventListener('message', function (ev) {
        if (es !== state.es) { return; }
        onStreamMessage(ev);
      });
      es.addEventListener('typing', function (ev) {
        if (es !== state.es) { return; }
        var data = parseJson(ev.data);
        if (data && typeof data.on === 'boolean') { showTyping(data.on); }
      });
      es.addEventListener('ended', function () {
        // The server ended the session (revoked or expired): start a new one before reconnecting.
        if (es !== state.es) { return; }
        state.tokenRejected = true;
        scheduleReconnect();
      });
      es.onerror = function () {
        if (es !== state.es) { return; }
        // While CONNECTING the browser retries by itself (sending Last-Event-ID). CLOSED means it gave
        // up (HTTP error such as an expired ticket or token, or a bad response): we take over with backoff.
        if (es.readyState === 2) {
          scheduleReconnect();
        }
      };
    });
  }

  function closeStream() {
    state.esAttempt += 1;  // a ticket still on its way is for a stream nobody wants any more
    state.esConnecting = false;
    window.clearTimeout(state.esTimer);
    state.esTimer = null;
    if (state.es) {
      var es = state.es;
      state.es = null;
      es.close();
    }
  }

  function scheduleReconnect() {
    closeStream();
    state.esFailures += 1;
    var delay = Math.min(STREAM_MAX_BACKOFF_MS, 1000 * Math.pow(2, state.esFailures - 1));
    state.esTimer = window.setTimeout(function () {
      state.esTimer = null;
      // A closed stream is often an expired token: renew when the clock says so, when the server said
      // the session ended, and every third failure in case it was revoked without saying so.
      var renew = state.tokenRejected || isExpired(state.expiresAt, 5000) || state.esFailures % 3 === 0;
      var ready = renew ? ensureSession(true) : Promise.resolve(true);
      ready.then(function (ok) {
        if (ok) {
          connectStream();
        } else if (!state.blocked) {
          scheduleReconnect();
        }
      });
    }, delay);
  }

  function parseJson(raw) {
    try { return JSON.parse(raw); } catch (e) { return null; }
  }

  function onStreamMessage(ev) {
    var data = parseJson(ev.data);
    if (!data || typeof data !== 'object') { return; }
    if (ev.lastEventId) {
      state.lastEventId = String(ev.lastEventId);
    } else if (data.id !== undefined && data.id !== null) {
      state.lastEventId = String(data.id);
    }
    if (data.id === undefined || data.id === null || data.id === '') {
      data.id = ev.lastEventId || null;
    }
    var rendered = renderServerMessage(data);
    if (normaliseRole(data.role) !== 'user') {
      showTyping(false);
    }
    if (rendered && !state.isOpen) {
      state.unread += 1;
      updateLauncherLabel();
    }
  }

  // ---------------------------------------------------------------- sending

  function submitInput() {
    if (ui.input.disabled) { return; }
    var text = ui.input.value.replace(/^\s+|\s+$/g, '');
    if (!text) { return; }
    ui.input.value = '';
    autosizeInput();
    sendText(text);
    ui.input.focus();
  }

  /** Queue a user message: shown immediately, delivered in order, retried with the same id. */
  function sendText(text) {
    if (state.blocked) { return; }
    var item = { text: text.slice(0, MAX_INPUT_CHARS), clientId: uuid4(), attempts: 0, renewed: false, failed: false };
    renderLocalUserMessage(item);
    showTyping(true);
    state.queue.push(item);
    pump();
  }

  function pump() {
    if (state.pumping) { return; }
    state.pumping = true;
    (async function () {
      try {
        while (state.queue.length) {
          var item = state.queue[0];
          var ok = await deliver(item);
          state.queue.shift();
          if (ok) {
            setItemStatus(item, 'sent');
          } else {
            item.failed = true;
            setItemStatus(item, 'failed');
            if (!state.blocked && !ui.errorText.textContent) {
              showError(TEXT.sendFailed, false);
            }
            if (state.queue.length === 0) {
              // Nothing is on its way to the assistant, so no reply is coming.
              showTyping(false);
            }
          }
        }
      } finally {
        state.pumping = false;
      }
    })();
  }

  async function deliver(item) {
    while (item.attempts < SEND_MAX_ATTEMPTS) {
      var ok = await ensureSession();
      if (!ok) { return false; }
      if (!state.es && !state.esTimer && !state.esConnecting) { connectStream(); }
      item.attempts += 1;
      var res = await request(MESSAGES_URL, 'POST', { text: item.text, client_message_id: item.clientId }, state.token);
      if (res.status >= 200 && res.status < 300) {
        if (ui.errorText.textContent === TEXT.tooFast) { hideError(); }
        return true;
      }
      if (res.status === 401) {
        if (item.renewed) { return false; }
        item.renewed = true;
        item.attempts -= 1;
        var renewed = await ensureSession(true);
        if (!renewed) { return false; }
        connectStream();
        continue;
      }
      if (res.status === 429) {
        var wait = retryAfterMs(res.headers && res.headers.get('Retry-After'));
        showNotice(TEXT.tooFast, wait + 1000);
        await sleep(wait);
        continue;
      }
      if (res.status === 0 || res.status >= 500) {
        await sleep(Math.min(8000, 1000 * Math.pow(2, item.attempts - 1)));
        continue;
      }
      // Any other 4xx (too long, malformed…) will not get better by retrying.
      showError(errorMessageOf(res, TEXT.sendFailed), false);
      return false;
    }
    return false;
  }

  // ---------------------------------------------------------------- SMS handover

  function buildHandover() {
    ui.phone = el('input', {
      id: 'msa-handover-phone',
      'class': 'msa-field',
      'data-testid': 'msa-handover-phone',
      type: 'tel',
      inputmode: 'tel',
      autocomplete: 'tel',
      required: '',
      maxlength: '32',
      placeholder: '(555) 123-4567',
    });
    ui.consent = el('input', {
      id: 'msa-handover-consent',
      'class': 'msa-checkbox',
      'data-testid': 'msa-handover-consent',
      type: 'checkbox',
    });
    ui.consentText = el('span', { id: 'msa-handover-consent-text', text: consentTextFor(state.clinicName || 'the clinic') });
    ui.handoverSubmit = el('button', { type: 'submit', 'class': 'msa-button', 'data-testid': 'msa-handover-submit', text: TEXT.textMe });
    ui.handoverCancel = el('button', { type: 'button', 'class': 'msa-linkbtn', text: TEXT.cancel });
    ui.handoverStatus = el('p', { 'class': 'msa-handover-status', 'data-testid': 'msa-handover-status', role: 'status' });
    ui.handoverForm = el('form', { 'class': 'msa-handover-form', novalidate: '' }, [
      el('label', { 'class': 'msa-label', 'for': 'msa-handover-phone', text: TEXT.phoneLabel }),
      ui.phone,
      el('label', { 'class': 'msa-consent', 'for': 'msa-handover-consent' }, [ui.consent, ui.consentText]),
      el('div', { 'class': 'msa-handover-actions' }, [ui.handoverSubmit, ui.handoverCancel]),
    ]);
    var section = el('div', {
      id: 'msa-handover',
      'class': 'msa-handover',
      'data-testid': 'msa-handover',
      role: 'region',
      'aria-label': TEXT.continueByText,
      hidden: '',
    }, [ui.handoverForm, ui.handoverStatus]);

    ui.handoverForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submitHandover();
    });
    ui.handoverCancel.addEventListener('click', function () {
      hideHandover();
      ui.handoverLink.focus();
    });
    return section;
  }

  function updateConsentText() {
    ui.consentText.textContent = consentTextFor(state.clinicName || 'the clinic');
  }

  function showHandover() {
    ui.handover.hidden = false;
    ui.handoverForm.hidden = false;
    ui.handoverStatus.textContent = '';
    ui.handoverStatus.classList.remove('msa-handover-status--error');
    ui.handoverLink.setAttribute('aria-expanded', 'true');
    ui.phone.focus();
  }

  function hideHandover() {
    ui.handover.hidden = true;
    ui.handoverLink.setAttribute('aria-expanded', 'false');
  }

  function setHandoverStatus(text, isError) {
    ui.handoverStatus.textContent = text;
    ui.handoverStatus.classList.toggle('msa-handover-status--error', !!isError);
  }

  async function submitHandover() {
    var phone = ui.phone.value.replace(/^\s+|\s+$/g, '');
    if ((phone.match(/\d/g) || []).length < 7) {
      setHandoverStatus(TEXT.handoverBadPhone, true);
      ui.phone.focus();
      return;
    }
    if (!ui.consent.checked) {
      setHandoverStatus(TEXT.handoverNeedConsent, true);
      ui.consent.focus();
      return;
    }
    // Send exactly the words the patient saw next to the checkbox.
    var consentText = ui.consentText.textContent;
    ui.handoverSubmit.disabled = true;
    setHandoverStatus('', false);
    try {
      var renewed = false;
      for (;;) {
        var ok = await ensureSession();
        if (!ok) {
          setHandoverStatus(TEXT.handoverFailed, true);
          return;
        }
        var res = await request(HANDOVER_URL, 'POST', { phone: phone, consent: true, consent_text: consentText }, state.token);
        if (res.status === 401 && !renewed) {
          renewed = true;
          if (!(await ensureSession(true))) {
            setHandoverStatus(TEXT.handoverFailed, true);
            return;
          }
          connectStream();
          continue;
        }
        if (res.status >= 200 && res.status < 300) {
          ui.handoverForm.hidden = true;
          setHandoverStatus(TEXT.handoverThanks, false);
          ui.handoverLink.setAttribute('aria-expanded', 'false');
          return;
        }
        if (res.status === 429) {
          setHandoverStatus(TEXT.tooFast, true);
          return;
        }
        setHandoverStatus(res.status === 400 ? errorMessageOf(res, TEXT.handoverFailed) : TEXT.handoverFailed, true);
        return;
      }
    } finally {
      ui.handoverSubmit.disabled = false;
    }
  }

  // ---------------------------------------------------------------- boot

  function loadStylesheet(root) {
    var reveal = function () { root.style.visibility = ''; };
    var existing = document.querySelector('link[data-msa-css]');
    if (existing) {
      reveal();
      return;
    }
    var link = el('link', { rel: 'stylesheet', href: CSS_URL, 'data-msa-css': '' });
    link.addEventListener('load', reveal);
    // Still show the launcher if the stylesheet fails, rather than leaving the page without chat.
    link.addEventListener('error', reveal);
    window.setTimeout(reveal, 5000);
    (document.head || document.documentElement).appendChild(link);
  }

  function boot() {
    if (document.getElementById(ROOT_ID)) { return; }
    var root = buildUi();
    loadStylesheet(root);
    document.body.appendChild(root);
  }

  // Back online after a network drop: reconnect now instead of waiting out the backoff.
  window.addEventListener('online', function () {
    if (state.token && !state.blocked && state.esTimer) {
      state.esFailures = 0;
      connectStream();
    }
  });

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot);
  } else {
    boot();
  }
})();
