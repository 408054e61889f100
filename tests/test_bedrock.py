"""Amazon Bedrock against the emulator, which verifies every SigV4 signature: what was sent, and what came back."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from mmembed import AuthenticationError, ConfigurationError, Embedder, InputError, Interleaved, ProviderError
from mmembed.errors import TextTooLongWarning
from mmembed.providers.bedrock import BedrockProvider
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.bedrock import TEST_CREDENTIALS, verify_sigv4
from mmembed.testing.media import make_audio, make_pdf, make_video
from mmembed.testing.wire import ApiError, Incoming

NOVA = "amazon.nova-2-multimodal-embeddings-v1:0"
TITAN = "amazon.titan-embed-image-v1"
MARENGO = "twelvelabs.marengo-embed-3-0-v1:0"
COHERE = "cohere.embed-v4:0"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Test credentials in the environment (with a session token), no shared config of the developer's."""
    empty = tmp_path_factory.mktemp("aws")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", str(TEST_CREDENTIALS.session_token))
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def bedrock(mmembed_emulator: Emulator) -> Iterator[object]:
    made: list[Embedder] = []

    def factory(model: str, **options: object) -> Embedder:
        embedder = Embedder("bedrock", model=model, base_url=mmembed_emulator.url, max_retries=2, **options)
        made.append(embedder)
        return embedder

    yield factory
    for embedder in made:
        embedder.close()


def signed(request: object) -> bool:
    headers = request.headers  # type: ignore[attr-defined]
    return (
        headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_CREDENTIALS.access_key}/")
        and "/us-east-1/bedrock/aws4_request" in headers["authorization"]
        and headers["x-amz-security-token"] == TEST_CREDENTIALS.session_token
        and request.status == 200  # type: ignore[attr-defined]
    )


def test_nova_embeds_every_kind_in_one_call(bedrock: object, mmembed_emulator: Emulator) -> None:
    pdf = make_pdf(["Quarterly report: red bicycles"], colours=[(200, 30, 30)])
    items = ["a red bicycle", colour_photo("red", size=(320, 240)), pdf, make_audio(2.0), make_video(2.0),
             "a blue sea", colour_photo("blue", size=(300, 200))]
    vectors = bedrock(NOVA).embed(items)  # type: ignore[operator]
    assert vectors.shape == (7, 3072) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    requests = mmembed_emulator.requests
    assert len(requests) == 7 and all(signed(r) for r in requests)  # one item per call, each one verified
    assert all(r.path == f"/model/{NOVA}/invoke" for r in requests)
    params = [r.json["singleEmbeddingParams"] for r in requests]
    assert all(r.json["taskType"] == "SINGLE_EMBEDDING" for r in requests)
    assert {p["embeddingPurpose"] for p in params} == {"GENERIC_INDEX"}
    kinds = sorted(next(k for k in p if k in ("text", "image", "audio", "video")) for p in params)
    assert kinds == ["audio", "image", "image", "image", "text", "text", "video"]
    images = [p["image"] for p in params if "image" in p]
    assert sorted(i["detailLevel"] for i in images) == ["DOCUMENT_IMAGE", "STANDARD_IMAGE", "STANDARD_IMAGE"]
    (video,) = [p["video"] for p in params if "video" in p]
    assert video["format"] == "mp4" and video["embeddingMode"] == "AUDIO_VIDEO_COMBINED"
    (audio,) = [p["audio"] for p in params if "audio" in p]
    assert audio["format"] == "wav" and base64.b64decode(audio["source"]["bytes"]) == make_audio(2.0)
    assert {p["text"]["truncationMode"] for p in params if "text" in p} == {"END"}
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[6])  # "red" nearer the red photo


def test_nova_queries_use_the_retrieval_purpose(bedrock: object, mmembed_emulator: Emulator) -> None:
    bedrock(NOVA, dimensions=1024).embed_query(["something red"])  # type: ignore[operator]
    (request,) = mmembed_emulator.requests
    params = request.json["singleEmbeddingParams"]
    assert params["embeddingPurpose"] == "GENERIC_RETRIEVAL" and params["embeddingDimension"] == 1024
    bedrock(NOVA, query_purpose="IMAGE_RETRIEVAL").embed_query(["x"])  # type: ignore[operator]
    assert mmembed_emulator.requests[-1].json["singleEmbeddingParams"]["embeddingPurpose"] == "IMAGE_RETRIEVAL"
    with pytest.raises(ConfigurationError, match="embeddingPurpose"):
        bedrock(NOVA, query_purpose="SEARCH")  # type: ignore[operator]
    with pytest.raises(ConfigurationError, match="256, 384, 1024, 3072"):
        bedrock(NOVA, dimensions=512)  # type: ignore[operator]


def test_nova_cuts_a_long_text_with_a_warning(bedrock: object, mmembed_emulator: Emulator) -> None:
    long_text = "red bicycles " * 1000  # 13,000 characters: Nova's value takes 8,192
    with pytest.warns(TextTooLongWarning, match="13,000 characters") as caught:
        vectors = bedrock(NOVA).embed([long_text, "a short one", long_text + "!"])  # type: ignore[operator]
    assert vectors.shape == (3, 3072) and len(caught) == 1  # warned once
    values = sorted(len(r.json["singleEmbeddingParams"]["text"]["value"]) for r in mmembed_emulator.requests)
    assert values == [len("a short one"), 8192, 8192]


def test_nova_embeds_long_media_in_thirty_second_windows(bedrock: object, mmembed_emulator: Emulator) -> None:
    from mmembed.mediainfo import probe
    from mmembed.testing.media import video_colour

    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    video = make_video(70.0, colour=[(0, red), (30, green), (60, blue)], keyframe_seconds=2.0)
    embedder = bedrock(NOVA)  # type: ignore[operator]
    vectors = embedder.embed([video, make_audio(70.0)])
    assert vectors.shape == (2, 3072)
    requests = mmembed_emulator.requests
    assert len(requests) == 6 and all(signed(r) for r in requests)  # 0-30, 30-60, 60-70 of each
    clips = [base64.b64decode(r.json["singleEmbeddingParams"]["video"]["source"]["bytes"])
             for r in requests if "video" in r.json["singleEmbeddingParams"]]
    assert sorted(round(probe(c).duration) for c in clips) == [10, 30, 30]
    assert sorted(video_colour(c) for c in clips) == sorted([(0, 0, 253), (0, 254, 0), (252, 0, 0)])
    # One row per item: the windows' vectors averaged by their length.
    segments = embedder.expand([video])
    assert [s.metadata for s in segments][:2] == [{"start": 0.0, "end": 16.0}, {"start": 16.0, "end": 32.0}]
    mmembed_emulator.clear()
    assert embedder.embed([s.item for s in segments]).shape == (len(segments), 3072)
    assert len(mmembed_emulator.requests) == len(segments)
    with pytest.raises(InputError, match="key frames") as err:  # one key frame a minute: no clean cut
        embedder.embed(["fine", make_video(70.0)])
    assert err.value.index == 1


def test_titan_text_image_and_interleaved_as_one_call(bedrock: object, mmembed_emulator: Emulator) -> None:
    photo = colour_photo("green", size=(200, 150))
    vectors = bedrock(TITAN, dimensions=384).embed(  # type: ignore[operator]
        ["a green field", photo, Interleaved(["a green field", photo])]
    )
    assert vectors.shape == (3, 384)
    requests = mmembed_emulator.requests
    assert len(requests) == 3 and all(signed(r) for r in requests)
    bodies = sorted((sorted(r.json) for r in requests), key=len)
    assert bodies[-1] == ["embeddingConfig", "inputImage", "inputText"]  # the interleaved item: one call
    assert all(r.json["embeddingConfig"] == {"outputEmbeddingLength": 384} for r in requests)
    assert 0.6 < float(vectors[2] @ vectors[0]) < 0.999 and 0.6 < float(vectors[2] @ vectors[1]) < 0.999


def test_titan_validation_error_names_the_item(bedrock: object) -> None:
    with pytest.raises(InputError) as err:
        bedrock(TITAN).embed(["short", " ".join(["word"] * 300)])  # type: ignore[operator]
    assert err.value.index == 1 and "ValidationException" in str(err.value)


def test_a_refused_item_in_a_stream_is_reported_and_the_rest_go_on(bedrock: object) -> None:
    from mmembed import RefusedInputError

    answers = dict(bedrock(TITAN).embed_stream(["short", " ".join(["word"] * 300), "also short"]))  # type: ignore[operator]
    assert sorted(answers) == [0, 1, 2]
    refused = answers[1]
    assert isinstance(refused, RefusedInputError) and refused.index == 1 and refused.status == 400
    assert all(isinstance(answers[i], np.ndarray) for i in (0, 2))


def test_marengo_text_image_and_text_image(bedrock: object, mmembed_emulator: Emulator) -> None:
    photo = colour_photo("red", size=(256, 256))
    vectors = bedrock(MARENGO).embed(["a red car", photo, Interleaved(["a red car", photo])])  # type: ignore[operator]
    assert vectors.shape == (3, 512)
    requests = mmembed_emulator.requests
    assert all(signed(r) for r in requests)
    by_type = {r.json["inputType"]: r.json for r in requests}
    assert by_type["text"] == {"inputType": "text", "text": {"inputText": "a red car"}}
    assert set(by_type["image"]["image"]["mediaSource"]) == {"base64String"}
    assert set(by_type["text_image"]["text_image"]) == {"inputText", "mediaSource"}
    with pytest.raises(InputError):
        bedrock(MARENGO).embed([make_video(1.0)])  # type: ignore[operator]


def test_marengo_27_by_inference_profile_only(bedrock: object, mmembed_emulator: Emulator) -> None:
    vectors = bedrock("us.twelvelabs.marengo-embed-2-7-v1:0").embed(["a dog"])  # type: ignore[operator]
    assert vectors.shape == (1, 1024)
    assert mmembed_emulator.requests[-1].json == {"inputType": "text", "inputText": "a dog"}
    with pytest.raises(ProviderError, match="inference profile") as err:  # the model's fault, not the item's
        bedrock("twelvelabs.marengo-embed-2-7-v1:0").embed(["a dog"])
    assert not isinstance(err.value, InputError)  # type: ignore[operator]


def test_cohere_v4_batches_without_a_model_field(bedrock: object, mmembed_emulator: Emulator) -> None:
    items = [f"note {i}" for i in range(100)] + [colour_photo("red", size=(120, 90))]
    vectors = bedrock(COHERE).embed(items)  # type: ignore[operator]
    assert vectors.shape == (101, 1536)
    requests = mmembed_emulator.requests
    assert sorted(len(r.json["inputs"]) for r in requests) == [5, 96] and all(signed(r) for r in requests)
    assert all(set(r.json) == {"input_type", "embedding_types", "inputs"} for r in requests)
    assert all(r.path == f"/model/{COHERE}/invoke" for r in requests)
    expected = mmembed_emulator.vector("bedrock", COHERE, text="note 3")
    assert float(vectors[3] @ expected) > 0.999


def test_cohere_v4_image_url_form_is_a_setting(bedrock: object, mmembed_emulator: Emulator) -> None:
    photo = colour_photo("red", size=(120, 90))
    bedrock(COHERE).embed(["a note", photo])  # type: ignore[operator]
    (segment,) = mmembed_emulator.requests[-1].json["inputs"][1]["content"]
    assert set(segment["image_url"]) == {"url"} and segment["image_url"]["url"].startswith("data:image/")
    # a Bedrock that takes bare strings
    mmembed_emulator.endpoint("bedrock").image_url_form = "string"  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match=r"must be a string.*try image_url_form='string'"):
        bedrock(COHERE).embed([photo])  # type: ignore[operator]
    vectors = bedrock(COHERE, image_url_form="string").embed(["a note", photo])  # type: ignore[operator]
    (segment,) = mmembed_emulator.requests[-1].json["inputs"][1]["content"]
    assert segment["image_url"].startswith("data:image/") and vectors.shape == (2, 1536)
    with pytest.raises(ConfigurationError, match="image_url_form must be one of object, string"):
        bedrock(COHERE, image_url_form="url")  # type: ignore[operator]


def test_model_ids_are_one_segment_encoded_once() -> None:
    provider = Embedder("bedrock", model=NOVA).provider
    assert provider.model_path(NOVA, "") == "/model/amazon.nova-2-multimodal-embeddings-v1%3A0/invoke"
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-image-v1"
    assert provider.model_path(arn, "") == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Famazon.titan-embed-image-v1/invoke"
    )
    assert BedrockProvider.base_model("us.cohere.embed-v4:0") == COHERE
    assert Embedder("bedrock", model="global.cohere.embed-v4:0").dimensions == 1536
    assert provider.base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert Embedder("bedrock", region="eu-west-1").provider.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert Embedder("bedrock", region="us-gov-west-1").provider.base_url.endswith("us-gov-west-1.amazonaws.com")
    for bad in ("evil.example/x", "us-east-1.evil", "US-EAST-1"):
        with pytest.raises(ConfigurationError, match="not an AWS region"):
            Embedder("bedrock", region=bad)


def test_every_attempt_is_signed_afresh_and_throttling_backs_off(
    bedrock: object, mmembed_emulator: Emulator
) -> None:
    embedder = bedrock(NOVA)  # type: ignore[operator]
    signer = embedder.provider.signer()
    calls: list[str] = []
    original = signer.headers

    def counting(url: str, body: bytes) -> dict[str, str]:
        headers = original(url, body)
        calls.append(headers["Authorization"])
        return headers

    signer.headers = counting  # type: ignore[method-assign]
    mmembed_emulator.inject("429", times=2, provider="bedrock")
    assert embedder.embed(["red"]).shape == (1, 3072)
    statuses = [r.status for r in mmembed_emulator.requests]
    assert statuses == [429, 429, 200] and len(calls) == 3  # a signature per attempt
    assert embedder.stats.rate_limited == 2


def test_throttling_answer_has_bedrocks_shape(bedrock: object, mmembed_emulator: Emulator) -> None:
    import requests

    mmembed_emulator.inject("429", provider="bedrock")
    answer = requests.post(f"{mmembed_emulator.url}/model/x/invoke", json={}, timeout=5)
    assert answer.status_code == 429 and "Retry-After" not in answer.headers
    assert answer.headers["x-amzn-ErrorType"].startswith("ThrottlingException:") and "message" in answer.json()


def test_bad_credentials_are_authentication_errors(
    bedrock: object, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789")
    with pytest.raises(AuthenticationError) as err:
        bedrock(NOVA).embed(["red"])  # type: ignore[operator]
    assert err.value.status == 403 and "InvalidSignatureException" in str(err.value)
    assert "wrong-secret" not in str(err.value) and TEST_CREDENTIALS.session_token not in str(err.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "stale-session-token")
    with pytest.raises(AuthenticationError, match="UnrecognizedClientException"):
        bedrock(NOVA).embed(["red"])  # type: ignore[operator]
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    with pytest.raises(AuthenticationError, match="UnrecognizedClientException"):
        bedrock(NOVA).embed(["red"])  # type: ignore[operator]


def test_the_emulator_refuses_expired_and_unsigned_requests(mmembed_emulator: Emulator) -> None:
    embedder = Embedder("bedrock", model=NOVA, base_url=mmembed_emulator.url)
    url = embedder.provider.url(embedder.provider.model_path(NOVA, ""))
    body = b'{"x":1}'
    headers = {k.lower(): v for k, v in embedder.provider.signer().headers(url, body).items()}
    headers["host"] = url.split("/")[2]
    path = url.split(headers["host"], 1)[1]
    req = Incoming("POST", path.replace("%3A", ":"), {}, headers, body, "id", 0.0, raw_path=path)
    verify_sigv4(req, "us-east-1", TEST_CREDENTIALS)  # as sent: valid
    with pytest.raises(ApiError, match="Signature expired"):
        verify_sigv4(req, "us-east-1", TEST_CREDENTIALS, now=__import__("time").time() + 600)
    with pytest.raises(ApiError, match="does not match"):
        verify_sigv4(Incoming("POST", req.path, {}, headers, b'{"x":2}', "id", 0.0, raw_path=path),
                     "us-east-1", TEST_CREDENTIALS)
    with pytest.raises(ApiError, match="does not match"):  # the path signed decoded, not as sent
        verify_sigv4(Incoming("POST", req.path, {}, headers, body, "id", 0.0, raw_path=req.path),
                     "us-east-1", TEST_CREDENTIALS)
    with pytest.raises(ApiError, match="region"):
        verify_sigv4(req, "eu-west-1", TEST_CREDENTIALS)
    import requests

    answer = requests.post(f"{mmembed_emulator.url}/model/{NOVA}/invoke", json={}, timeout=5)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")


def test_bedrock_api_key_goes_as_bearer(
    mmembed_emulator_factory: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = mmembed_emulator_factory(api_keys=["bedrock-api-key-123456"])  # type: ignore[operator]
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123456")
    embedder = Embedder("bedrock", model=TITAN, base_url=emulator.url)
    assert embedder.embed(["red"]).shape == (1, 1024)
    assert emulator.requests[-1].headers["authorization"] == "Bearer bedrock-api-key-123456"
    assert "bedrock-api-key-123456" not in repr(embedder)
    with pytest.raises(AuthenticationError):
        Embedder("bedrock", model=TITAN, base_url=emulator.url, api_key="another-key-0000000").embed(["red"])


def test_missing_region_and_credentials_say_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    assert Embedder("bedrock").provider.region == "us-east-1"  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    with pytest.raises(ConfigurationError, match="AWS_BEARER_TOKEN_BEDROCK"):
        Embedder("bedrock").embed(["red"])


def test_secrets_stay_out_of_repr_and_config(bedrock: object) -> None:
    embedder = bedrock(NOVA)  # type: ignore[operator]
    text = repr(embedder) + repr(embedder.provider) + repr(embedder.provider.signer())
    assert TEST_CREDENTIALS.secret_key not in text and str(TEST_CREDENTIALS.session_token) not in text
    config = embedder.provider.persisted_settings()
    assert TEST_CREDENTIALS.secret_key not in str(config) and config["model"] == NOVA


def test_without_botocore_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(ImportError, match=r"mmembed\[bedrock\]"):
        Embedder("bedrock").provider.signer()  # type: ignore[attr-defined]
