// ComfyUI-NOVA frontend: shows under the NOVA sampling/encode nodes what their settings mean
// (frame counts, seconds, cropping), recomputed live as widgets change.
import { app } from "../../scripts/app.js";
import { SEED_NODES, describeNode, foldSavedSeed } from "./nova_logic.js";

const NODES = new Set(["NOVAGenerate", "NOVAARFrameStep", "NOVAVAEEncode"]);

function widgetValues(node) {
  const values = {};
  for (const w of node.widgets ?? []) values[w.name] = w.value;
  return values;
}

app.registerExtension({
  name: "comfyui-nova.seeds",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SEED_NODES.has(nodeData.name)) return;
    const configure = nodeType.prototype.configure;
    nodeType.prototype.configure = function (info) {
      const names = (this.widgets ?? []).map((w) => w.name);
      const folded = foldSavedSeed(names, info?.widgets_values);
      return configure.call(this, folded ? { ...info, widgets_values: folded } : info);
    };
  },
});

app.registerExtension({
  name: "comfyui-nova.info",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      draw?.apply(this, arguments);
      if (this.flags?.collapsed) return;
      const info = describeNode(nodeData.name, widgetValues(this));
      if (!info) return;
      ctx.save();
      ctx.font = "12px sans-serif";
      ctx.fillStyle = info.warning ? "#f0a020" : "#8fb8d8";
      ctx.fillText(info.text, 10, this.size[1] - 8);
      ctx.restore();
    };
    const computeSize = nodeType.prototype.computeSize;
    nodeType.prototype.computeSize = function () {
      const size = computeSize ? computeSize.apply(this, arguments) : [200, 100];
      return [size[0], size[1] + 18];
    };
  },
});
