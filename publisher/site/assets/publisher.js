// Copied by `publisher site` from publisher/site/assets/publisher.js: edit it there.
// Small additions to the theme, in plain JavaScript; nothing is fetched.

// Opened from a folder on disk (file:), the theme's search cannot start: show the note
// (docs/overrides/main.html in this repository) that says how to search.
if (window.location.protocol === "file:") {
  for (const note of document.querySelectorAll(".publisher-offline")) {
    note.hidden = false;
  }
}
