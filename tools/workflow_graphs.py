"""The shipped workflows, defined once; ``tools/build_workflows.py`` writes them in ComfyUI's UI
format (workflows/*.json, drag-and-drop) and API format (workflows/api/*.json).

A graph is a list of nodes ``(id, class_type, widget values, {input: (source id, output slot)})``.
"""

OSP = "nova-d48w1024-osp480"
SDXL = "nova-d48w1024-sdxl1024"
T2I_NEGATIVE = "low quality, deformed, distorted, disfigured, fused fingers, bad anatomy, weird hand"
# The official T2V demo's quality setting (scripts/app_nova_t2v.py): 128 set steps, 100 diffusion steps, cfg 7.
T2V_SAMPLER = {
    "ar_steps": 128,
    "diffusion_steps": 100,
    "cfg": 7.0,
    "guidance_trunc": 0.0,
    "guidance_renorm": 1.0,
    "image_guidance": 0.0,
    "flow_shift": 0.0,
}
# The official T2I demo (scripts/app_nova_t2i.py): 64 / 25, cfg 5.
T2I_SAMPLER = {**T2V_SAMPLER, "ar_steps": 64, "diffusion_steps": 25, "cfg": 5.0}


def _loaders(ckpt):
    return [
        (1, "NOVACheckpointLoader", {"ckpt_name": ckpt, "dtype": "auto", "download": False}, {}),
        (2, "NOVATextEncoderLoader", {"text_encoder_name": ckpt, "dtype": "auto", "download": False}, {}),
        (3, "NOVAVAELoader", {"vae_name": ckpt, "dtype": "fp32", "download": False}, {}),
    ]


def _save_video(node_id, images, fps, prefix):
    return [
        (node_id, "CreateVideo", {"fps": 12.0}, {"images": images, **({"fps": fps} if fps else {})}),
        (
            node_id + 1,
            "SaveVideo",
            {"filename_prefix": prefix, "format": "auto", "codec": "auto"},
            {"video": (node_id, 0)},
        ),
    ]


def _prompt(node_id, text):
    return (node_id, "NOVATextEncode", {"text": text}, {"text_encoder": (2, 0)})


DECODE = {"fps": 12.0, "tile_latents": 5, "feather": 0}
MASK_WIDGETS = {"mask_threshold": 0.5, "mask_grow": 0}


def _frame_widgets(seed, motion=5.0):
    return {"seed": seed, "motion_flow": motion, "fps": 12.0, **MASK_WIDGETS, "denoise": 1.0}


def _generate_widgets(frames, seed, feather=0, denoise=1.0):
    return {"frames": frames, **_frame_widgets(seed), "feather": feather, "denoise": denoise}


URSA_VIDEO = "URSA-1.7B-FSQ320"
URSA_IMAGE = "URSA-1.7B-IBQ1024"
URSA_NEGATIVE = "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly"


def _ursa_loader(ckpt):
    return (1, "URSACheckpointLoader", {"ckpt_name": ckpt, "dtype": "auto", "download": False}, {})


def _ursa_widgets(prompt, seed, motion=9.0, image=False, extension=False):
    """URSA Generate's widgets: the official video settings (49 x 320 x 512, 50 steps), or the image ones
    (1024 x 1024, 25 steps); an extension conditions on the clip's last 13 frames with noise 0.1."""
    size = (
        {"width": 1024, "height": 1024, "frames": 1, "steps": 25}
        if image
        else {"width": 512, "height": 320, "frames": 49, "steps": 50}
    )
    return {
        "prompt": prompt,
        "negative_prompt": URSA_NEGATIVE,
        "motion": motion,
        **size,
        "guidance": 7.0,
        "guidance_trunc": 0.9,
        "seed": seed,
        "num_cond_frames": 13,
        "cond_noise_scale": 0.1 if extension else 0.0,
    }


WORKFLOWS = {
    "nova_text_to_video": [
        *_loaders(OSP),
        _prompt(
            4,
            "A majestic red fox trots through fresh snow in a quiet pine forest at golden hour, soft light, cinematic.",
        ),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (
            6,
            "NOVAGenerate",
            _generate_widgets(33, 42),
            {"model": (1, 0), "vae": (3, 0), "positive": (4, 0), "sampler": (5, 0)},
        ),
        *_save_video(7, (6, 0), (6, 1), "nova/text_to_video"),
    ],
    "nova_text_to_image": [
        *_loaders(SDXL),
        _prompt(4, "A shiba inu wearing a red beret and a knitted scarf, studio portrait, detailed fur."),
        _prompt(5, T2I_NEGATIVE),
        (6, "NOVASetSampler", T2I_SAMPLER, {}),
        (
            7,
            "NOVAGenerate",
            _generate_widgets(1, 0),
            {"model": (1, 0), "vae": (3, 0), "positive": (4, 0), "sampler": (6, 0), "negative": (5, 0)},
        ),
        (8, "SaveImage", {"filename_prefix": "nova/text_to_image"}, {"images": (7, 0)}),
    ],
    "nova_image_to_video": [
        *_loaders(OSP),
        _prompt(4, "The scene comes alive: leaves sway in the wind and the camera slowly pushes in."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadImage", {"image": "example.png"}, {}),
        (
            7,
            "NOVAGenerate",
            _generate_widgets(33, 7),
            {"model": (1, 0), "vae": (3, 0), "positive": (4, 0), "sampler": (5, 0), "start_image": (6, 0)},
        ),
        *_save_video(8, (7, 0), (7, 1), "nova/image_to_video"),
    ],
    "nova_video_continuation": [
        *_loaders(OSP),
        _prompt(4, "The waves keep rolling onto the rocky beach under a cloudy sky."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadVideo", {"file": "clip.mp4"}, {}),
        (7, "GetVideoComponents", {}, {"video": (6, 0)}),
        (8, "NOVAVAEEncode", {"width": 768, "height": 480, "resize": "crop"}, {"vae": (3, 0), "image": (7, 0)}),
        (
            9,
            "NOVAARFrameStep",
            {"latent_frames": 8, **_frame_widgets(11)},
            {"model": (1, 0), "positive": (4, 0), "sampler": (5, 0), "latents": (8, 0)},
        ),
        (10, "NOVAVAEDecode", DECODE, {"vae": (3, 0), "latents": (9, 0)}),
        *_save_video(11, (10, 0), (10, 1), "nova/continuation"),
    ],
    "nova_long_video": [
        *_loaders(OSP),
        _prompt(4, "A hot air balloon rises above green hills at sunrise."),
        _prompt(5, "The hot air balloon drifts over a river valley, mist below."),
        _prompt(6, "The hot air balloon floats above the clouds, the sun high in a blue sky."),
        (7, "NOVASetSampler", T2V_SAMPLER, {}),
        (
            8,
            "NOVAARFrameStep",
            {"latent_frames": 9, **_frame_widgets(1)},
            {"model": (1, 0), "positive": (4, 0), "sampler": (7, 0)},
        ),
        (
            9,
            "NOVAARFrameStep",
            {"latent_frames": 8, **_frame_widgets(2)},
            {"model": (1, 0), "positive": (5, 0), "sampler": (7, 0), "latents": (8, 0)},
        ),
        (
            10,
            "NOVAARFrameStep",
            {"latent_frames": 8, **_frame_widgets(3)},
            {"model": (1, 0), "positive": (6, 0), "sampler": (7, 0), "latents": (9, 0)},
        ),
        (11, "NOVAVAEDecode", DECODE, {"vae": (3, 0), "latents": (10, 0)}),
        *_save_video(12, (11, 0), (11, 1), "nova/long_video"),
    ],
    "nova_long_video_30s": [
        *_loaders(OSP),
        _prompt(4, "Waves roll onto a rocky beach at dawn, pink sky, calm sea."),
        _prompt(5, "A storm gathers over the sea, dark clouds, big waves crash on the rocks."),
        _prompt(6, "The storm clears, the sun breaks through the clouds over the shining sea."),
        (7, "NOVASetSampler", T2V_SAMPLER, {}),
        (8, "NOVASegment", {"latent_frames": 30, "motion_flow": 4.0, "fps": 12.0}, {"positive": (4, 0)}),
        (
            9,
            "NOVASegment",
            {"latent_frames": 30, "motion_flow": 8.0, "fps": 12.0},
            {"positive": (5, 0), "previous": (8, 0)},
        ),
        (
            10,
            "NOVASegment",
            {"latent_frames": 31, "motion_flow": 5.0, "fps": 12.0},
            {"positive": (6, 0), "previous": (9, 0)},
        ),
        (
            11,
            "NOVALongVideo",
            {"seed": 30, "window": 9, "blend_frames": 3, "loop_frames": 0, **MASK_WIDGETS, "denoise": 1.0},
            {"model": (1, 0), "sampler": (7, 0), "segments": (10, 0)},
        ),
        (12, "NOVAVAEDecode", DECODE, {"vae": (3, 0), "latents": (11, 0)}),
        *_save_video(13, (12, 0), (12, 1), "nova/long_video_30s"),
    ],
    "nova_image_inpainting": [
        *_loaders(SDXL),
        _prompt(4, "A bouquet of sunflowers in a blue ceramic vase."),
        _prompt(5, T2I_NEGATIVE),
        (6, "NOVASetSampler", T2I_SAMPLER, {}),
        (7, "LoadImage", {"image": "inpaint.png"}, {}),
        (
            8,
            "NOVAGenerate",
            _generate_widgets(1, 0, feather=16),
            {
                "model": (1, 0),
                "vae": (3, 0),
                "positive": (4, 0),
                "sampler": (6, 0),
                "negative": (5, 0),
                "start_image": (7, 0),
                "mask": (7, 1),
            },
        ),
        (9, "SaveImage", {"filename_prefix": "nova/inpainting"}, {"images": (8, 0)}),
    ],
    "nova_video_inpainting": [
        *_loaders(OSP),
        _prompt(4, "A white swan glides across the water."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadVideo", {"file": "clip.mp4"}, {}),
        (7, "GetVideoComponents", {}, {"video": (6, 0)}),
        (8, "NOVAVAEEncode", {"width": 768, "height": 480, "resize": "crop"}, {"vae": (3, 0), "image": (7, 0)}),
        (9, "LoadVideo", {"file": "clip_mask.mp4"}, {}),
        (10, "GetVideoComponents", {}, {"video": (9, 0)}),
        (11, "ImageToMask", {"channel": "red"}, {"image": (10, 0)}),
        (12, "SetLatentNoiseMask", {}, {"samples": (8, 0), "mask": (11, 0)}),
        (
            13,
            "NOVAARFrameStep",
            {"latent_frames": 0, **_frame_widgets(5)},
            {"model": (1, 0), "positive": (4, 0), "sampler": (5, 0), "latents": (12, 0)},
        ),
        (14, "NOVAVAEDecode", {**DECODE, "feather": 8}, {"vae": (3, 0), "latents": (13, 0), "source": (7, 0)}),
        *_save_video(15, (14, 0), (14, 1), "nova/video_inpainting"),
    ],
    "nova_outpainting": [
        *_loaders(OSP),
        _prompt(4, "A wide view of a sunny beach with palm trees, waves rolling in."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadVideo", {"file": "clip_4x3.mp4"}, {}),
        (7, "GetVideoComponents", {}, {"video": (6, 0)}),
        (
            8,
            "NOVAOutpaintCanvas",
            {"width": 768, "height": 480, "zoom": 1.0, "x": 0.5, "y": 0.5, "fill": "edge"},
            {"image": (7, 0)},
        ),
        (9, "NOVAVAEEncode", {"width": 768, "height": 480, "resize": "crop"}, {"vae": (3, 0), "image": (8, 0)}),
        (10, "SetLatentNoiseMask", {}, {"samples": (9, 0), "mask": (8, 1)}),
        (
            11,
            "NOVAARFrameStep",
            {"latent_frames": 0, **_frame_widgets(9)},
            {"model": (1, 0), "positive": (4, 0), "sampler": (5, 0), "latents": (10, 0)},
        ),
        (12, "NOVAVAEDecode", {**DECODE, "feather": 8}, {"vae": (3, 0), "latents": (11, 0), "source": (8, 0)}),
        *_save_video(13, (12, 0), (12, 1), "nova/outpainting"),
    ],
    "nova_image_to_image": [
        *_loaders(SDXL),
        _prompt(4, "An oil painting in the style of Van Gogh, thick brush strokes, swirling sky."),
        _prompt(5, T2I_NEGATIVE),
        (6, "NOVASetSampler", T2I_SAMPLER, {}),
        (7, "LoadImage", {"image": "example.png"}, {}),
        (
            8,
            "NOVAGenerate",
            _generate_widgets(1, 0, denoise=0.6),
            {
                "model": (1, 0),
                "vae": (3, 0),
                "positive": (4, 0),
                "sampler": (6, 0),
                "negative": (5, 0),
                "start_image": (7, 0),
            },
        ),
        (9, "SaveImage", {"filename_prefix": "nova/image_to_image"}, {"images": (8, 0)}),
    ],
    "nova_video_restyle": [
        *_loaders(OSP),
        _prompt(4, "An anime-style animation with flat colours and clean outlines."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadVideo", {"file": "clip.mp4"}, {}),
        (7, "GetVideoComponents", {}, {"video": (6, 0)}),
        (8, "NOVAVAEEncode", {"width": 768, "height": 480, "resize": "crop"}, {"vae": (3, 0), "image": (7, 0)}),
        (
            9,
            "NOVAARFrameStep",
            {"latent_frames": 0, **_frame_widgets(4), "denoise": 0.6},
            {"model": (1, 0), "positive": (4, 0), "sampler": (5, 0), "latents": (8, 0)},
        ),
        (10, "NOVAVAEDecode", DECODE, {"vae": (3, 0), "latents": (9, 0)}),
        *_save_video(11, (10, 0), (10, 1), "nova/video_restyle"),
    ],
    "nova_first_last_frame": [
        *_loaders(OSP),
        _prompt(4, "A time-lapse of a flower bud slowly opening into full bloom, soft studio light."),
        (5, "NOVASetSampler", T2V_SAMPLER, {}),
        (6, "LoadImage", {"image": "example.png"}, {}),
        (7, "LoadImage", {"image": "end.png"}, {}),
        (
            8,
            "NOVAKeyframes",
            {"frames": "-1", "approach": 2, "strength": 0.5, "width": 768, "height": 480, "resize": "crop"},
            {"vae": (3, 0), "images": (7, 0)},
        ),
        (
            9,
            "NOVAGenerate",
            _generate_widgets(33, 12),
            {
                "model": (1, 0),
                "vae": (3, 0),
                "positive": (4, 0),
                "sampler": (5, 0),
                "start_image": (6, 0),
                "keyframes": (8, 0),
            },
        ),
        *_save_video(10, (9, 0), (9, 1), "nova/first_last_frame"),
    ],
    # URSA: one loader, one generate node per clip. The official settings: 49 x 320 x 512 at 50 steps,
    # guidance 7 truncated at t = 0.9, motion 9 (5 for extension); images 1024 x 1024 at 25 steps.
    "ursa_text_to_video": [
        _ursa_loader(URSA_VIDEO),
        (
            2,
            "URSAGenerate",
            _ursa_widgets(
                "A lone grizzly bear walks through a misty forest at dawn, sunlight catching its fur.", seed=0
            ),
            {"model": (1, 0)},
        ),
        *_save_video(3, (2, 0), None, "ursa/text_to_video"),
    ],
    "ursa_image_to_video": [
        _ursa_loader(URSA_VIDEO),
        (2, "LoadImage", {"image": "example.png"}, {}),
        (
            3,
            "ImageScale",
            {"upscale_method": "bilinear", "width": 512, "height": 320, "crop": "center"},
            {"image": (2, 0)},
        ),
        (
            4,
            "URSAGenerate",
            _ursa_widgets("The scene comes alive: leaves sway in the wind and the camera slowly pushes in.", seed=1),
            {"model": (1, 0), "image": (3, 0)},
        ),
        *_save_video(5, (4, 0), None, "ursa/image_to_video"),
    ],
    "ursa_video_extension": [
        _ursa_loader(URSA_VIDEO),
        (
            2,
            "URSAGenerate",
            _ursa_widgets("A hot air balloon rises above green hills at sunrise.", seed=2),
            {"model": (1, 0)},
        ),
        (
            3,
            "URSAGenerate",
            _ursa_widgets(
                "The hot air balloon drifts over a river valley, mist below.", seed=3, motion=5.0, extension=True
            ),
            {"model": (1, 0), "video": (2, 0)},
        ),
        (
            4,
            "URSAGenerate",
            _ursa_widgets(
                "The hot air balloon floats above the clouds, the sun high in a blue sky.",
                seed=4,
                motion=5.0,
                extension=True,
            ),
            {"model": (1, 0), "video": (3, 0)},
        ),
        *_save_video(5, (4, 0), None, "ursa/video_extension"),
    ],
    "ursa_text_to_image": [
        _ursa_loader(URSA_IMAGE),
        (
            2,
            "URSAGenerate",
            _ursa_widgets(
                "A shiba inu wearing a red beret and a knitted scarf, studio portrait, detailed fur.",
                seed=0,
                image=True,
            ),
            {"model": (1, 0)},
        ),
        (3, "SaveImage", {"filename_prefix": "ursa/text_to_image"}, {"images": (2, 0)}),
    ],
}

# Layout hints for build_workflows.py (node id -> its first possible column) where the plain
# layout stacks too many nodes in the first column: the mask video's branch starts one column right.
FIRST_COLUMNS = {"nova_video_inpainting": {9: 1}}

DESCRIPTIONS = {
    "nova_image_to_image": (
        "Image-to-image on a text-to-image checkpoint: example.png is re-sampled at denoise 0.6 "
        "(keeps its composition, follows the prompt; lower keeps more, higher changes more)."
    ),
    "nova_video_restyle": (
        "Video restyle: clip.mp4 is re-sampled frame by frame at denoise 0.6 (keeps its layout and "
        "motion, takes the prompt's style)."
    ),
    "nova_first_last_frame": (
        "First-and-last-frame video: example.png is frame 0, end.png (NOVA Keyframes, frame -1) "
        "the last frame; the two latent frames before the end approach it."
    ),
    "nova_text_to_video": "Text-to-video: 33 frames at 768x480 with the official demo's quality settings.",
    "nova_text_to_image": "Text-to-image with a 1024px checkpoint and the T2I demo's negative prompt.",
    "nova_image_to_video": (
        "Image-to-video: the loaded image (center-cropped to 768x480) is the first frame. Input: "
        "example.png in ComfyUI's input/ folder (or pick/upload another in LoadImage)."
    ),
    "nova_video_continuation": (
        "Extends a clip: its frames prefill the temporal context, 8 latents (32 frames) follow. "
        "Input: clip.mp4 in ComfyUI's input/ folder (or pick/upload another in LoadVideo)."
    ),
    "nova_long_video": "Long video from chained AR steps, one prompt per segment (25 latents, 97 frames).",
    "nova_long_video_30s": (
        "A 30-second video (361 frames) with three prompts: a sliding 9-latent window keeps memory flat."
    ),
    "nova_image_inpainting": (
        "Inpainting on a text-to-image checkpoint: erase an area of input/inpaint.png in the mask "
        "editor "
        "(its alpha is the mask); NOVA regenerates it from the prompt and blends the edge over 16 pixels."
    ),
    "nova_video_inpainting": (
        "Replaces a region through a whole clip: white in clip_mask.mp4 (one mask frame per video "
        "frame) "
        "is regenerated from the prompt; the rest of every frame and its motion stay, the edge blended over 8 pixels."
    ),
    "ursa_text_to_video": (
        "URSA text-to-video: 49 frames at 512x320, the official settings (50 steps, guidance 7, motion 9)."
    ),
    "ursa_image_to_video": (
        "URSA image-to-video: the loaded image, center-cropped and scaled to 512x320 (URSA needs "
        "the clip's size), is the first frame. Input: example.png in ComfyUI's input/ folder (or "
        "pick/upload another in LoadImage)."
    ),
    "ursa_video_extension": (
        "URSA long video by chained extensions, as the official README does: a 49-frame clip, "
        "then two extensions, each conditioned on the last 13 frames (noise 0.1, motion 5) and "
        "adding 36 frames (121 frames, one prompt per part)."
    ),
    "ursa_text_to_image": "URSA text-to-image with a 1024px IBQ checkpoint (25 steps, guidance 7).",
    "nova_outpainting": (
        "Outpainting: a 4:3 clip is placed in the middle of the 768x480 canvas and NOVA generates the sides."
    ),
}
