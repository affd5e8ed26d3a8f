// Progressive enhancement only: every page works without JavaScript.  htmx requests carry the session's CSRF
// token (from the page's meta tag) so unsafe htmx requests pass the same check as forms.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
});
