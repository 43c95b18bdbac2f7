// Opened from a folder on disk (file:), the theme's search cannot start: show the note of
// docs/overrides/main.html that says how to search. Nothing is fetched.
if (window.location.protocol === "file:") {
  for (const note of document.querySelectorAll(".publisher-offline")) {
    note.hidden = false;
  }
}
