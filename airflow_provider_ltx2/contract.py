"""The gateway's contract as plain constants: paths, the key header, the price (and what N videos cost) and
the request tables.

Kept free of imports (Airflow's included) so the simulator, which plays the gateway's side, starts in a
fraction of a second; ``api`` builds every call and check on them (docs/gateway-contract.md).
"""

SUBMIT_PATH = "/ltx-2-video-api-581/v1/ltx-2-video-api-request"
RESULT_PATH = "/ltx-2-video-api-581/v1/ltx-2-video-api-request-result"
STATUS_PATH = "/v2/requests/status/{request_id}"
KEY_HEADER = "Ocp-Apim-Subscription-Key"
PRICE_PER_VIDEO_USD = 0.60

DURATION_RANGE = (2, 10)
RESOLUTIONS = ("720p", "1080p", "2160p")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
FPS_VALUES = (24, 25, 30)
REQUEST_FIELDS = ("image_url", "prompt", "duration", "resolution", "aspect_ratio", "fps", "generate_audio")


def cost_usd(videos: int) -> float:
    """What ``videos`` generations cost, in USD to the cent."""
    return round(videos * PRICE_PER_VIDEO_USD, 2)
