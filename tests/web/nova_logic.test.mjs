import { test } from "node:test";
import assert from "node:assert/strict";
import { describeEncode, describeGenerate, describeNode, describeStep, framesForLatents, latentsForFrames } from "../../web/nova_logic.js";

test("frame arithmetic matches the 3D VAE", () => {
  assert.deepEqual([1, 2, 3, 9].map(framesForLatents), [1, 5, 9, 33]);
  assert.deepEqual(latentsForFrames(33), { latents: 9, valid: true, nearest: 33 });
  assert.equal(latentsForFrames(34).valid, false);
  assert.equal(latentsForFrames(34).nearest, 33);
});

test("generate line: frames, latents, seconds", () => {
  assert.deepEqual(describeGenerate(33, 12), { text: "33 frames = 9 latents, 2.75 s at 12 fps", warning: false });
  assert.equal(describeGenerate(1, 12).text, "1 frame: an image");
  const bad = describeGenerate(30, 12);
  assert.equal(bad.warning, true);
  assert.match(bad.text, /use 29 or 33/);
});

test("step line: added frames", () => {
  assert.equal(describeStep(8, 12).text, "+8 latents: +32 frames (+2.67 s); alone: 29 frames");
  assert.match(describeStep(0, 12).text, /only repaints/);
});

test("encode line warns on unofficial sizes", () => {
  assert.equal(describeEncode(768, 480, "crop").warning, false);
  assert.match(describeEncode(768, 480, "crop").text, /center-cropped to 1.60:1/);
  assert.equal(describeEncode(700, 480, "stretch").warning, true);
});

test("describeNode dispatches by node id", () => {
  assert.equal(describeNode("NOVAGenerate", { frames: 9, fps: 12 }).text, "9 frames = 3 latents, 0.75 s at 12 fps");
  assert.equal(describeNode("KSampler", {}), null);
});

test("seeds saved above 2**32 fold to the seed that gives the same video", async () => {
  const { SEED_RANGE, foldSavedSeed, foldSeed } = await import("../../web/nova_logic.js");
  assert.equal(foldSeed(5), 5);
  assert.equal(foldSeed(SEED_RANGE - 1), SEED_RANGE - 1);
  assert.equal(foldSeed(SEED_RANGE + 7), 7);
  assert.equal(foldSeed(2 ** 52 + 2 ** 40 + 3), 3); // (the frontend holds seeds as doubles)
  const names = ["latent_frames", "seed", "control_after_generate", "motion_flow"];
  const saved = [8, SEED_RANGE * 3 + 42, "randomize", 5];
  assert.deepEqual(foldSavedSeed(names, saved), [8, 42, "randomize", 5]);
  assert.equal(saved[1], SEED_RANGE * 3 + 42); // the saved values are not mutated
  assert.equal(foldSavedSeed(names, [8, 42, "fixed", 5]), null);
  assert.equal(foldSavedSeed(["text"], ["a prompt"]), null);
});
