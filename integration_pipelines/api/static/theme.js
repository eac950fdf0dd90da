// Applied before the page paints, so a dark choice never flashes light: the stored choice
// (localStorage "ip-theme"), else the system's preference.
(function () {
  var stored = null;
  try { stored = localStorage.getItem("ip-theme"); } catch (e) { /* storage may be disabled */ }
  var dark = stored ? stored === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
})();
