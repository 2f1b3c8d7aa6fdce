// guardstream ops: reload every 30 s while the box is ticked (the charts are rendered by the server).
(function () {
  "use strict";
  const box = () => document.getElementById("auto");
  setInterval(function () { if (box() && box().checked) window.location.reload(); }, 30000);
})();
