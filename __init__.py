"""ComfyUI-NOVA: NOVA autoregressive video generation as ComfyUI V3 nodes.

Importing this file is cheap: node modules (and torch-heavy code) load when ComfyUI asks for the
node list. Only the V3 entry point is exported (a NODE_CLASS_MAPPINGS here would make ComfyUI
ignore it).
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import NovaExtension
    from .nodes.folders import register_nova_folder, register_ursa_folder

    register_nova_folder()
    register_ursa_folder()
    return NovaExtension()
