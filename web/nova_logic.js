// Pure helpers of the NOVA frontend extension (no ComfyUI imports, unit-tested with node --test).

export const TEMPORAL_RATIO = 4; // the 3D VAE: 1 + 4 * (latents - 1) frames

export function framesForLatents(latents) {
  return latents > 0 ? 1 + TEMPORAL_RATIO * (latents - 1) : 0;
}

// Video frames -> latents; frames must be 1 + 4k, otherwise the count the backend would reject.
export function latentsForFrames(frames) {
  const valid = Number.isInteger(frames) && frames >= 1 && (frames - 1) % TEMPORAL_RATIO === 0;
  const latents = Math.max(1, Math.floor((frames - 1) / TEMPORAL_RATIO) + 1);
  return { latents, valid, nearest: framesForLatents(latents) };
}

export function seconds(frames, fps) {
  return fps > 0 ? frames / fps : 0;
}

function fmtSeconds(s) {
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

// The line shown under NOVA Generate.
export function describeGenerate(frames, fps) {
  const { latents, valid, nearest } = latentsForFrames(frames);
  if (!valid) return { text: `frames must be 1 + 4k: use ${nearest} or ${nearest + TEMPORAL_RATIO}`, warning: true };
  if (frames === 1) return { text: "1 frame: an image", warning: false };
  return { text: `${frames} frames = ${latents} latents, ${fmtSeconds(seconds(frames, fps))} at ${fps} fps`, warning: false };
}

// The line shown under NOVA AR Frame Step (it adds latents to whatever it continues).
export function describeStep(latentFrames, fps) {
  if (latentFrames === 0) return { text: "0 latents: only repaints the given latents under their noise_mask", warning: false };
  const added = TEMPORAL_RATIO * latentFrames;
  return {
    text: `+${latentFrames} latents: +${added} frames (+${fmtSeconds(seconds(added, fps))}); alone: ${framesForLatents(latentFrames)} frames`,
    warning: false,
  };
}

const KNOWN_SIZES = [[768, 480], [1024, 1024], [512, 512]];

// The line shown under NOVA VAE Encode: what happens to the input image.
export function describeEncode(width, height, resize) {
  const known = KNOWN_SIZES.some(([w, h]) => w === width && h === height);
  const ratio = (width / height).toFixed(2);
  if (resize === "none") return { text: `input must be exactly ${width}x${height}`, warning: !known };
  const how = resize === "crop" ? `center-cropped to ${ratio}:1, resized` : "stretched";
  const note = known ? "" : " (not an official NOVA size: check the checkpoint)";
  return { text: `images are ${how} to ${width}x${height}${note}`, warning: !known };
}

export function describeNode(nodeType, values) {
  switch (nodeType) {
    case "NOVAGenerate":
      return describeGenerate(values.frames, values.fps);
    case "NOVAARFrameStep":
      return describeStep(values.latent_frames, values.fps);
    case "NOVAVAEEncode":
      return describeEncode(values.width, values.height, values.resize);
    default:
      return null;
  }
}

// Seeds: only the low 32 bits change a NOVA video (the CPU generator, as in the official code),
// so the seed widgets stop at 2**32 - 1. Workflows saved when they ran to 2**64 - 1 keep loading:
// a larger stored seed is replaced by seed mod 2**32, which gives the very same video.
export const SEED_RANGE = 2 ** 32;
export const SEED_NODES = new Set(["NOVAGenerate", "NOVAARFrameStep", "NOVALongVideo"]);

export function foldSeed(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < SEED_RANGE) return value;
  return value % SEED_RANGE;
}

// widgets_values of a saved node -> a copy with the seed folded (null when nothing changes).
export function foldSavedSeed(widgetNames, widgetsValues) {
  const index = widgetNames.indexOf("seed");
  if (index < 0 || !Array.isArray(widgetsValues) || index >= widgetsValues.length) return null;
  const folded = foldSeed(widgetsValues[index]);
  if (folded === widgetsValues[index]) return null;
  const copy = widgetsValues.slice();
  copy[index] = folded;
  return copy;
}
