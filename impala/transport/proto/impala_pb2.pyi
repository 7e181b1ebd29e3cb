from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "offset")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("actor_id", "protocol_version")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    protocol_version: int
    def __init__(self, actor_id: _Optional[str] = ..., protocol_version: _Optional[int] = ...) -> None: ...

class RunSettings(_message.Message):
    __slots__ = ("env_id", "env_kwargs", "num_envs", "unroll_length", "seed", "torso", "hidden_sizes", "lstm_size", "algorithm", "discount", "baseline_cost", "entropy_cost", "clip_rho", "clip_pg_rho", "max_abs_reward", "env_module", "inference")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_KWARGS_FIELD_NUMBER: _ClassVar[int]
    NUM_ENVS_FIELD_NUMBER: _ClassVar[int]
    UNROLL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TORSO_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    LSTM_SIZE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COST_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_COST_FIELD_NUMBER: _ClassVar[int]
    CLIP_RHO_FIELD_NUMBER: _ClassVar[int]
    CLIP_PG_RHO_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_REWARD_FIELD_NUMBER: _ClassVar[int]
    ENV_MODULE_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    env_kwargs: str
    num_envs: int
    unroll_length: int
    seed: int
    torso: str
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    lstm_size: int
    algorithm: str
    discount: float
    baseline_cost: float
    entropy_cost: float
    clip_rho: float
    clip_pg_rho: float
    max_abs_reward: float
    env_module: str
    inference: str
    def __init__(self, env_id: _Optional[str] = ..., env_kwargs: _Optional[str] = ..., num_envs: _Optional[int] = ..., unroll_length: _Optional[int] = ..., seed: _Optional[int] = ..., torso: _Optional[str] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., lstm_size: _Optional[int] = ..., algorithm: _Optional[str] = ..., discount: _Optional[float] = ..., baseline_cost: _Optional[float] = ..., entropy_cost: _Optional[float] = ..., clip_rho: _Optional[float] = ..., clip_pg_rho: _Optional[float] = ..., max_abs_reward: _Optional[float] = ..., env_module: _Optional[str] = ..., inference: _Optional[str] = ...) -> None: ...

class Setup(_message.Message):
    __slots__ = ("protocol_version", "run_id", "actor_index", "seed", "learner_address", "settings")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LEARNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    run_id: str
    actor_index: int
    seed: int
    learner_address: str
    settings: RunSettings
    def __init__(self, protocol_version: _Optional[int] = ..., run_id: _Optional[str] = ..., actor_index: _Optional[int] = ..., seed: _Optional[int] = ..., learner_address: _Optional[str] = ..., settings: _Optional[_Union[RunSettings, _Mapping]] = ...) -> None: ...

class Unroll(_message.Message):
    __slots__ = ("actor_id", "sequence", "params_version", "observations", "terminated", "truncated", "actions", "rewards", "behaviour_logits", "core_state", "episode_returns", "episode_lengths", "incarnation", "frame_history", "gradients", "payload")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_LOGITS_FIELD_NUMBER: _ClassVar[int]
    CORE_STATE_FIELD_NUMBER: _ClassVar[int]
    EPISODE_RETURNS_FIELD_NUMBER: _ClassVar[int]
    EPISODE_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    FRAME_HISTORY_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    sequence: int
    params_version: int
    observations: Tensor
    terminated: Tensor
    truncated: Tensor
    actions: Tensor
    rewards: Tensor
    behaviour_logits: Tensor
    core_state: _containers.RepeatedCompositeFieldContainer[Tensor]
    episode_returns: Tensor
    episode_lengths: Tensor
    incarnation: int
    frame_history: Tensor
    gradients: _containers.RepeatedCompositeFieldContainer[Param]
    payload: bytes
    def __init__(self, actor_id: _Optional[str] = ..., sequence: _Optional[int] = ..., params_version: _Optional[int] = ..., observations: _Optional[_Union[Tensor, _Mapping]] = ..., terminated: _Optional[_Union[Tensor, _Mapping]] = ..., truncated: _Optional[_Union[Tensor, _Mapping]] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., behaviour_logits: _Optional[_Union[Tensor, _Mapping]] = ..., core_state: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., episode_returns: _Optional[_Union[Tensor, _Mapping]] = ..., episode_lengths: _Optional[_Union[Tensor, _Mapping]] = ..., incarnation: _Optional[int] = ..., frame_history: _Optional[_Union[Tensor, _Mapping]] = ..., gradients: _Optional[_Iterable[_Union[Param, _Mapping]]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("learner_version", "run_ended")
    LEARNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ENDED_FIELD_NUMBER: _ClassVar[int]
    learner_version: int
    run_ended: str
    def __init__(self, learner_version: _Optional[int] = ..., run_ended: _Optional[str] = ...) -> None: ...

class WeightsRequest(_message.Message):
    __slots__ = ("actor_id", "have_version")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    have_version: int
    def __init__(self, actor_id: _Optional[str] = ..., have_version: _Optional[int] = ...) -> None: ...

class Param(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Tensor
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Weights(_message.Message):
    __slots__ = ("version", "not_modified", "params", "payload")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    version: int
    not_modified: bool
    params: _containers.RepeatedCompositeFieldContainer[Param]
    payload: bytes
    def __init__(self, version: _Optional[int] = ..., not_modified: _Optional[bool] = ..., params: _Optional[_Iterable[_Union[Param, _Mapping]]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Observations(_message.Message):
    __slots__ = ("actor_id", "step", "observations", "rewards", "terminated", "truncated", "payload")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    step: int
    observations: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    payload: bytes
    def __init__(self, actor_id: _Optional[str] = ..., step: _Optional[int] = ..., observations: _Optional[_Union[Tensor, _Mapping]] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., terminated: _Optional[_Union[Tensor, _Mapping]] = ..., truncated: _Optional[_Union[Tensor, _Mapping]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Actions(_message.Message):
    __slots__ = ("actions", "run_ended", "payload")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    RUN_ENDED_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    actions: Tensor
    run_ended: str
    payload: bytes
    def __init__(self, actions: _Optional[_Union[Tensor, _Mapping]] = ..., run_ended: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...
