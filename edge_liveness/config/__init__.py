"""The one configuration model the whole daemon reads.

Sources, strongest first: explicit overrides (CLI flags), environment variables
``EDGE_LIVENESS_<SECTION>__<KEY>``, secret files (systemd's ``$CREDENTIALS_DIRECTORY`` or
``--secrets-dir``), the TOML file, built-in defaults. Every section forbids unknown keys, so a typo
is an error rather than a silently ignored setting; so is a variable naming no section.

Layer: the bottom; imports nothing of the project but its own modules beside it (``problems``,
``files``, ``loaders``).
"""

from __future__ import annotations

import contextvars
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from edge_liveness.config import files as _files
from edge_liveness.config.loaders import ConfigFileError, read_secrets, read_toml  # noqa: F401  (re-exported)
from edge_liveness.config.problems import ENV_PREFIX, env_var_for  # noqa: F401  (env_var_for: re-exported)
from edge_liveness.config.problems import deep_env_problem as _deep_env_problem
from edge_liveness.config.problems import env_parse_problem as _env_parse_problem
from edge_liveness.config.problems import problem_line as _problem_line
from edge_liveness.config.problems import unknown_env_problems as _unknown_env_problems

DEFAULT_CONFIG_PATH = Path("/etc/edge-liveness/edge-liveness.toml")

# Secret files whose names are friendlier than section__key (systemd LoadCredential= names).
SECRET_ALIASES = {
    "mqtt_password": ("mqtt", "password"),
    "signing_key": ("security", "signing_key"),
    "web_token": ("web", "token"),
}


def _default_state_dir() -> str:
    # systemd's StateDirectory= exports this; outside systemd a user-writable place.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    system = Path("/var/lib/edge-liveness")
    if system.is_dir() and os.access(system, os.W_OK):
        return str(system)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "edge-liveness")


def _default_models_dir() -> str:
    system = Path("/var/lib/edge-liveness/models")
    if system.is_dir():
        return str(system)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "edge-liveness" / "models")


def _usable_path(v: str) -> str:
    # A name no file can have fails here, once, instead of as an OSError wherever it is first used.
    problem = _files.path_problem(v) if v else None
    if problem:
        raise ValueError(problem)
    return v


def _usable_source(v: str) -> str:
    # URLs and GStreamer pipelines are not paths (a URL may carry a long token); anything else is one.
    return v if "://" in v or "!" in v else _usable_path(v)


PathText = Annotated[str, AfterValidator(_usable_path)]
SourceText = Annotated[str, AfterValidator(_usable_source)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceConfig(Section):
    id: str = Field(default_factory=lambda: socket.gethostname() or "door", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                    description="device id; becomes the MQTT topic segment")


class CameraConfig(Section):
    source: SourceText = Field("0", description="'picamera2', a device index, /dev/videoN, a GStreamer pipeline, "
                                          "rtsp:// or http:// URL, a video file, an image or a folder of images")
    width: int = Field(640, gt=0, le=7680)
    height: int = Field(480, gt=0, le=4320)
    fps: float = Field(30.0, gt=0, le=240)
    loop: bool = Field(False, description="replay sources: start again at the end")
    realtime: bool = Field(True, description="replay sources: pace at the file's frame rate (False: as fast as possible)")
    reopen_initial_s: float = Field(0.5, gt=0, le=60)
    reopen_max_s: float = Field(30.0, gt=0, le=3600)
    read_timeout_s: float = Field(5.0, gt=0, le=600, description="no frame for this long counts as a stalled camera")
    threaded: bool = Field(True, description="capture in its own thread; a slow stage then drops frames, not latency")


class ModelsConfig(Section):
    dir: PathText = Field(default_factory=_default_models_dir, description="where `models fetch` puts third-party models")
    detector: PathText = "face_detection_short_range.tflite"
    landmarks: PathText = "face_landmark.tflite"
    eyes: PathText = Field("iris_landmark_int8.tflite", description="eye-contour model: \"iris_landmark_int8.tflite\" (default) = the int8 copy shipped with the package; \"iris_landmark.tflite\" = the float model `models fetch` brings (optional: without one blinks use the mesh's eyelids)")
    liveness: PathText = Field("", description="liveness .tflite; empty = the model shipped with the package")
    texture: bool = Field(True, description="also score the bundled texture pair (MiniFASNet, int8): a frame it calls an attack fails whatever the liveness model says (decision.texture_threshold; docs/decision.md)")
    num_threads: int = Field(1, ge=1, le=16)


class DetectionConfig(Section):
    min_score: float = Field(0.6, gt=0, lt=1)
    nms_iou: float = Field(0.3, gt=0, lt=1)
    min_face_frac: float = Field(0.15, gt=0, le=1, description="face box side / frame short side to count as 'large enough'")
    multiple_faces: Literal["reject", "largest"] = "reject"
    track: bool = Field(True, description="skip the detector while landmark tracking holds")
    min_presence: float = Field(0.5, gt=0, lt=1, description="landmark face-presence score below which tracking is lost")
    max_yaw_deg: float = Field(30.0, gt=0, le=90, description="a face turned further than this is not frontal enough to start an attempt")
    redetect_frames: int = Field(15, ge=1, le=1000, description="while tracking, still run the detector every N frames so a second face (a phone held up beside a live person) is seen")


class BlinkConfig(Section):
    model: PathText = Field("", description="learned blink model .tflite (with its .json manifest); empty = the one shipped with the package")
    threshold: float | None = Field(None, gt=0, lt=1, description="P(in a blink) at or above which a moment counts as blinking; empty = the model manifest's")
    min_closed_s: float = Field(0.0, ge=0, le=2, description="shortest blink (the run of moments the model marks as blinking)")
    max_closed_s: float = Field(0.7, gt=0, le=5, description="longest blink: eyes kept shut longer, or a long look down, are not blinks")
    baseline_s: float = Field(3.0, gt=0, le=60, description="window of each eye's open level (80th percentile of its openness)")
    min_eye_px: float = Field(8.0, gt=0, le=200, description="eye width (corner to corner, frame pixels) below which the eyes are not trusted (visible=False)")
    eye_model: bool = Field(True, description="read the eyelids with the eye-contour model (models.eyes) when it is present; False = the face mesh's eyelids, which miss most blinks")


class ActiveConfig(Section):
    mode: Literal["off", "blink", "turn", "blink_and_turn", "challenge"] = "blink"
    blink_timeout: float = Field(6.0, gt=0, le=120)
    blink_alternatives: list[Literal["turn_left", "turn_right", "nod"]] = Field(
        default_factory=lambda: ["turn_left", "turn_right"],
        description="blink mode: head motions that also count as the sign of life; [] = a blink only (docs/decision.md)")
    turn_deg: float = Field(20.0, gt=0, le=80)
    nod_deg: float = Field(12.0, gt=0, le=80)
    turn_window_s: float = Field(4.0, gt=0, le=60)
    challenge_min_steps: int = Field(1, ge=1, le=3)
    challenge_max_steps: int = Field(3, ge=1, le=3)
    challenge_step_timeout_s: float = Field(5.0, gt=0, le=60)
    challenge_max_low_s: float = Field(1.0, ge=0, le=60, description="challenge: longest run of frames with P(live) below the threshold before spoof_suspected")


class DecisionConfig(Section):
    min_frames: int = Field(8, ge=1, le=10000, description="fewest scored frames before any decision")
    min_evidence_s: float = Field(1.0, ge=0, le=60, description="shortest span of scored frames before any decision: a real person gets a fair look, on any frame rate (docs/decision.md)")
    score_window_s: float = Field(2.0, ge=0, le=60, description="the passive verdict is the median P(live) of the last this-many seconds; 0 = of the whole attempt")
    threshold: float | None = Field(None, gt=0, lt=1, description="P(live) threshold; empty = the model manifest's")
    attempt_timeout_s: float = Field(10.0, gt=0, le=600)
    face_lost_s: float = Field(1.0, gt=0, le=60)
    cooldown_s: float = Field(3.0, ge=0, le=600)
    rearm: Literal["leave", "cooldown"] = Field("leave", description="after a decision, a new attempt needs the face to leave (absent face_lost_s) and the cooldown; 'cooldown': the cooldown only")
    fusion: Literal["learned", "veto"] = Field("learned", description="how the liveness model and the texture pair (models.texture) make one verdict: 'learned' = the logistic over their four logits in models/liveness_fusion.json (leave-one-person-out: fewer replays through and fewer real people refused than the veto; docs/decision.md), the pair still vetoing under learned_veto_threshold; 'veto' = the liveness model decides and the pair can only veto, under texture_threshold")
    learned_veto_threshold: float = Field(0.05, gt=0, lt=1, description="decision.fusion = 'learned': the texture pair's P(real) under which it still vetoes a frame whatever the fusion says, so a confident 'screen' is never outvoted (LOPO, docs/decision.md)")
    texture_threshold: float = Field(0.2, gt=0, lt=1, description="decision.fusion = 'veto': the texture pair's P(real) under which it vetoes a frame (models.texture): 0.2 is the highest at which unseen real people's attempts lose no more than without the pair (LOPO, docs/decision.md); 0.5 is upstream's own call")
    pass_margin: float = Field(0.25, ge=0, le=10, description="a pass needs the passive verdict this far above the threshold, in logit units of P(live) (0.25 = 1.28 times the odds; docs/decision.md): a recording's blink or head turn never opens the door on a verdict at the threshold's edge (docs/decision.md)")
    early_fail: bool = Field(False, description="true: fail spoof_suspected as soon as the passive verdict is low; false: keep looking until attempt_timeout_s, so a real person is not refused on a bad second (docs/decision.md)")


class ScheduleConfig(Section):
    passive_scores_per_s: float = Field(12.0, gt=0, le=240, description="passive liveness scores per second (each passive model) while an attempt collects; the verdict is a median over seconds (docs/decision.md#scheduling)")
    eye_model_per_s: float = Field(30.0, gt=0, le=240, description="eye-contour model runs per second while a blink can count: the rate the blink model resamples the eyelids to; at 30 fps every frame the passive model leaves (docs/decision.md#scheduling)")
    eyes_per_run: int = Field(1, ge=1, le=2, description="eyes the eye-contour model reads a run: 2 = both (two invokes); 1 = one eye a run, in turn (one invoke; each eye interpolated on its own; both eyes until the open level exists, after a gap and on a frame whose eye reads lowered; the near eye alone while the head is turned) (docs/decision.md#scheduling)")
    every_frame: bool = Field(False, description="true: every model on every frame an attempt can use it (the path before scheduling, for comparison)")
    parallel: bool = Field(False, description="true: models due on the same frame run side by side in threads instead of on separate frames")
    overlap: bool = Field(True, description="true: the next frame's face (detector, mesh, pose) is found on a second thread while this frame's models and decision run: the same results, attempt frames ~1.4x faster on 2 cores (docs/decision.md#scheduling); false: one thread, one frame at a time")
    find_ahead: int = Field(3, ge=1, le=16, description="with overlap: how many frames the face-finding thread may run ahead of the judging one while frames come faster than they are judged (a scored frame's judge costs about twice a plain one's; frames queued ahead keep the other thread busy through it). The daemon judges every held frame as soon as no newer one is waiting, so a camera-paced loop gains no lag from it (docs/decision.md#scheduling)")
    split_views: bool = Field(True, description="with overlap: a two-view model's tight view runs on the second thread (a second interpreter of the model: one more copy of it in memory) while this thread runs its context view and the texture pair's second model (the first goes to whichever thread is free first), which splits a scored frame about evenly; false: the second thread takes only the pair's first model (docs/decision.md#scheduling)")


class MqttConfig(Section):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, gt=0, lt=65536)
    client_id: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    topic_prefix: str = Field("edge-liveness", pattern=r"^[^#+]+$")
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: bool = False
    ca_file: PathText = ""
    cert_file: PathText = ""
    key_file: PathText = ""
    tls_insecure: bool = Field(False, description="skip hostname check (never in production)")
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    max_command_bytes: int = Field(4096, ge=64, le=1048576)
    command_rate_per_min: int = Field(30, ge=1, le=10000)


class SecurityConfig(Section):
    signing_key: SecretStr = Field(SecretStr(""), description="HMAC key for events and commands; from the secrets directory "
                                   "(empty: `run` creates one at <storage.state_dir>/signing_key at first start)")
    max_clock_skew_s: float = Field(300.0, gt=0, le=86400)
    allow_unsigned_commands: bool = Field(False, description="accept commands without a signature (unsafe: any "
                                          "client of the broker could switch the active check off)")

    @field_validator("signing_key")
    @classmethod
    def _not_blank(cls, v: SecretStr) -> SecretStr:
        text = v.get_secret_value()
        if text and not text.strip():
            raise ValueError("is only whitespace: give the key, or leave it unset to have one created")
        return v


class StorageConfig(Section):
    state_dir: PathText = Field(default_factory=_default_state_dir)
    retention_days: float = Field(30.0, gt=0, le=3650)
    retention_rows: int = Field(100000, ge=100, le=100000000, description="journal rows kept (delivered ones are pruned first)")
    max_pending_rows: int = Field(1000000, ge=100, le=100000000,
                                  description="hard cap on undelivered journal rows; past it the oldest are dropped with an ERROR log")
    save_images: bool = Field(False, description="privacy: face images never touch disk unless this is true; "
                                                 "true keeps each attempt's aligned crops under <state_dir>/attempt_images/")
    images_per_attempt: int = Field(8, ge=1, le=100, description="crops kept per attempt (spread over it) when save_images")
    images_keep_attempts: int = Field(500, ge=1, le=1000000, description="attempts whose crops are kept; the oldest go first")
    images_keep_days: float = Field(30.0, gt=0, le=3650, description="crops older than this are deleted")

    @field_validator("state_dir")
    @classmethod
    def _named(cls, v: str) -> str:
        # "" would quietly put the journal and the signing key in whatever directory the command ran from.
        if not v.strip():
            raise ValueError("is empty: give the directory for the journal and status file, e.g. /var/lib/edge-liveness")
        return v


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class HealthConfig(Section):
    http: bool = Field(False, description="serve /healthz and /metrics on localhost")
    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: int = Field(9108, gt=0, lt=65536)


class WebConfig(Section):
    enabled: bool = Field(False, description="serve the commissioning page (live preview, decisions, mode switch)")
    host: str = Field("127.0.0.1", min_length=1, description="a non-loopback address needs the web_token secret")
    port: int = Field(8088, gt=0, lt=65536)
    preview_fps: float = Field(5.0, gt=0, le=30, description="preview frames per second (encoded only while a viewer watches)")
    token: SecretStr = Field(SecretStr(""), description="bearer token; from the secrets directory as web_token")


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_file", default=None)
_secrets_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("secrets_dir", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        return read_toml(path) if path else {}


class _SecretsSource(PydanticBaseSettingsSource):
    """Secret files: ``<section>__<key>`` or one of SECRET_ALIASES; contents stripped of the final newline."""

    def get_field_value(self, field, field_name):  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        d = _secrets_dir.get()
        if d is None and os.environ.get("CREDENTIALS_DIRECTORY"):
            d = Path(os.environ["CREDENTIALS_DIRECTORY"])
        return read_secrets(d, SECRET_ALIASES) if d else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      validate_assignment=True, nested_model_default_partial_update=True)

    device: DeviceConfig = Field(default_factory=DeviceConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    blink: BlinkConfig = Field(default_factory=BlinkConfig)
    active: ActiveConfig = Field(default_factory=ActiveConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    web: WebConfig = Field(default_factory=WebConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _SecretsSource(settings_cls), _TomlSource(settings_cls))

    @property
    def state_path(self) -> Path:
        return Path(self.storage.state_dir)

    @property
    def topic_base(self) -> str:
        return f"{self.mqtt.topic_prefix.rstrip('/')}/{self.device.id}"


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def resolve_config_path(path: str | Path | None) -> Path | None:
    if path:
        return Path(path)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(path: str | Path | None = None, secrets_dir: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings; raise ConfigError listing every problem, one line each."""
    cfg_path = resolve_config_path(path)
    t1 = _config_file.set(cfg_path)
    t2 = _secrets_dir.set(Path(secrets_dir) if secrets_dir else None)
    layout = {name: set(f.annotation.model_fields) for name, f in Settings.model_fields.items()}
    unknown = _unknown_env_problems(layout)
    try:
        settings = Settings(**overrides)
    except ConfigFileError as e:
        raise ConfigError(unknown + [str(e)]) from None
    except ValidationError as e:
        raise ConfigError(unknown + [_problem_line(err, layout) for err in e.errors()]) from None
    except SettingsError as e:
        raise ConfigError(unknown + [_env_parse_problem(e, Settings)]) from None
    except RecursionError:
        # The file's nesting is caught where it is read; what is left is an environment variable's JSON.
        raise ConfigError(unknown + [_deep_env_problem()]) from None
    finally:
        _config_file.reset(t1)
        _secrets_dir.reset(t2)
    if unknown:
        raise ConfigError(unknown)
    return settings


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The effective config as plain data, secrets shown as '********' (or '' when unset)."""
    def walk(model: BaseModel) -> dict[str, Any]:
        out = {}
        for name in type(model).model_fields:
            v = getattr(model, name)
            if isinstance(v, BaseModel):
                out[name] = walk(v)
            elif isinstance(v, SecretStr):
                out[name] = "********" if v.get_secret_value() else ""
            else:
                out[name] = v
        return out
    return walk(settings)
