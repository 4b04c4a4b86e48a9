using Loom.Inference.Model;
using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

/// <summary>Configuration section "Inference".</summary>
public sealed class InferenceOptions
{
    public const string SectionName = "Inference";

    /// <summary>A Hugging Face model folder (config.json, safetensors, tokenizer.json). Null: no model served.</summary>
    public string? ModelDirectory { get; set; }
    /// <summary>Where the forward pass runs: auto (CUDA when ILGPU lists a CUDA device, else cpu), cpu (the SIMD kernels),
    /// cuda (the GPU backend; fails at start without a device) or ilgpu-cpu (the GPU kernels on ILGPU's CPU accelerator:
    /// for tests, far too slow to serve). See docs/decisions/010-ilgpu-backend.md.</summary>
    public string Backend { get; set; } = InferenceBackends.Auto;
    /// <summary>On a GPU backend, sample on the device (temperature, top-k, top-p, min-p, logprobs) so only the tokens
    /// come back per step; requests with a grammar, logit bias or penalties are sampled on the host, row by row. False:
    /// every row's logits come back and the host samples (the same tokens for the same seed).</summary>
    public bool DeviceSampling { get; set; } = true;
    /// <summary>Weight storage in memory: Auto keeps what the checkpoint has (F16 becomes F32), or force F32 / BF16, or Q8
    /// (int8 with a scale per 32 values, quantized at load; see <see cref="Model.WeightFormat"/>).</summary>
    public WeightFormat WeightFormat { get; set; } = WeightFormat.Auto;
    /// <summary>How KV caches keep keys and values in the pool's pages: f32 (the default) or bf16 (bfloat16, rounded to
    /// nearest even when written and widened exactly when attention reads them): a page holds twice the positions, so the
    /// same PoolBytes holds twice the tokens. The CPU backend only: bf16 with a GPU backend is refused at start. See
    /// <see cref="KvCacheFormat"/>.</summary>
    public KvCacheFormat KvCacheFormat { get; set; } = KvCacheFormat.F32;
    /// <summary>How adapters' A and Bᵀ are kept in pool pages and host copies: f32 (the default) or bf16 (bfloat16, rounded
    /// to nearest even when laid out, exact for adapters saved in bf16, widened exactly when the LoRA kernels read them;
    /// rows packed, so an adapter takes about half the pages and a batch step reads half its bytes). The CPU backend
    /// only: bf16 with a GPU backend is refused at start. See <see cref="Memory.AdapterPageFormat"/>.</summary>
    public Memory.AdapterPageFormat AdapterPageFormat { get; set; } = Memory.AdapterPageFormat.F32;
    /// <summary>Longest prompt + completion (also capped by the model's max_position_embeddings).</summary>
    public int MaxContext { get; set; } = 4096;
    /// <summary>Prompt tokens of one sequence per forward pass; longer prompts are prefilled in chunks.</summary>
    public int PrefillChunk { get; set; } = 256;
    /// <summary>Bytes of the unified page pool (KV cache and resident adapters share it).</summary>
    public long PoolBytes { get; set; } = 512L << 20;
    /// <summary>Tokens (decodes + prefill chunks of all sequences) per forward pass.</summary>
    public int TokenBudget { get; set; } = 512;
    /// <summary>Sequences in the running batch.</summary>
    public int MaxRunningSequences { get; set; } = 64;
    /// <summary>Bytes of adapters kept in host memory, laid out as the pool pages they load into (least recently used
    /// dropped first). Set it to hold every registered adapter to serve as S-LoRA does (no disk read after the first).</summary>
    public long HostAdapterCacheBytes { get; set; } = 1L << 30;
    /// <summary>Largest LoRA rank accepted at registration.</summary>
    public int MaxLoraRank { get; set; } = 128;
    /// <summary>Host memory for the KV caches of preempted sequences (swap); 0: preemption always recomputes.</summary>
    public long SwapSpaceBytes { get; set; } = 1L << 30;
    /// <summary>Preempted sequences with fewer computed tokens than this are dropped and recomputed, not swapped.</summary>
    public int SwapMinTokens { get; set; } = 32;
    /// <summary>Swap copies run on their own thread, overlapped with the forward passes (FastSwitch): a swapped-out
    /// sequence's pages return to the pool once its copy is done, a swapped-in one runs once its copy is done. False:
    /// the engine thread copies (split across cores) and waits.</summary>
    public bool AsyncSwap { get; set; } = true;
    /// <summary>Automatic prefix caching on pool pages (decision 012): full KV blocks are kept in the pool, keyed by tenant,
    /// adapter and their tokens (a hash chain), and a request of the same tenant and adapter whose prompt starts with them
    /// points its page table at them instead of computing them: a shared system prompt, an earlier turn of a conversation
    /// (its answer included), the other choices of an n &gt; 1 request. Concurrent requests with one prefix compute it once.
    /// Blocks nobody holds are evicted, least recently released first, when the pool needs pages, before anyone is
    /// preempted. Requests without a tenant are not cached. False: every request computes its prompt.</summary>
    public bool PrefixCaching { get; set; } = true;
    /// <summary>Order of admission and preemption: Vtc (fair across tenants) or Fcfs.</summary>
    public SchedulingPolicyKind SchedulingPolicy { get; set; } = SchedulingPolicyKind.Vtc;
    /// <summary>VTC: service counted per prompt token.</summary>
    public double VtcInputWeight { get; set; } = 1;
    /// <summary>VTC: service counted per generated token.</summary>
    public double VtcOutputWeight { get; set; } = 2;
    /// <summary>VTC: how far (weighted tokens / share) a backlogged running tenant must be ahead of a waiting one before
    /// one of its sequences is preempted for the waiting one.</summary>
    public double VtcFairnessGap { get; set; } = 2048;

    /// <summary>VTC: service counted per trained token of a fine-tuning run (its forward and backward cost about three
    /// forward tokens).</summary>
    public double VtcTrainingWeight { get; set; } = 3;
    /// <summary>Time fine-tuning may take while inference requests are running, as a fraction of the time spent serving
    /// them (0.5: about a third of the loop; FlexLLM co-serving), taken in bursts of <see cref="TrainingBurstMs"/>; with no
    /// inference to serve, training takes all the time. At the default, inference at half capacity keeps its median time
    /// between tokens within 1.2x of inference alone while training keeps half its solo rate (BENCHMARKS.md, co-serving
    /// after Run M: 1.04x with 51% and 1.14x with 52% in two full runs on a Zen 3 EPYC).</summary>
    public double TrainingShareWhileServing { get; set; } = 0.5;
    /// <summary>While requests run, training takes its share in bursts of about this many milliseconds (whole units), each
    /// once its share of the serving time has added up to it: one inter-token interval in many carries the training
    /// time instead of every one carrying a part (the median time between tokens stays near that of inference alone;
    /// the tail grows by about one burst). 0: a unit as soon as there is credit.</summary>
    public double TrainingBurstMs { get; set; } = 250;
    /// <summary>Tokens of training work (times the layers) per slice when no inference runs; a slice runs at least one
    /// unit (a layer of one row). Bounds how long an arriving request waits for the slice in progress: the default, 1,
    /// is one unit per slice, and the loop looks for arrivals between slices.</summary>
    public int TrainingSliceTokens { get; set; } = 1;
    /// <summary>Bytes of activations a training run may keep for its backward pass; layers beyond it are recomputed.</summary>
    public long TrainingActivationBytes { get; set; } = 1L << 30;
    /// <summary>Rows of a training row's forward pass that ride along with a decode step (a multiple of 8; 0: none): the
    /// chunk goes through every layer inside the step, each of its base-weight products computed in the step's own
    /// region over the same weight rows (decision 005). The forward pass then goes chunk by chunk also on its own, with
    /// bitwise the same results. Off by default: on the 2-core CPU it saved at most about a third of a chunk's time and
    /// cost the median time between tokens more than slicing does (BENCHMARKS.md, decision 005).</summary>
    public int TrainingRideRows { get; set; }
    /// <summary>A chunk rides along with one decode step in this many (1: every step while the run is in a forward pass).</summary>
    public int TrainingRideEvery { get; set; } = 1;

    /// <summary>Further base models this node serves beside <see cref="ModelDirectory"/>, each with its own engine and pool
    /// (Inference:Models:0:Name, :Directory, :WeightFormat, :PoolBytes). Only the first model trains fine-tunes.</summary>
    public List<ServedModelOptions> Models { get; set; } = [];

    /// <summary>The options of the engine of <paramref name="model"/>: these, with its folder, weight format and pool.</summary>
    public InferenceOptions For(ServedModelOptions model)
    {
        var copy = (InferenceOptions)MemberwiseClone();
        copy.ModelDirectory = model.Directory;
        copy.WeightFormat = model.WeightFormat ?? WeightFormat;
        copy.PoolBytes = model.PoolBytes ?? PoolBytes;
        copy.Models = [];
        return copy;
    }

    /// <summary>The first problem with these options, or null.</summary>
    public string? Problem() =>
        !InferenceBackends.IsKnown(Backend) ? $"Inference:Backend must be one of {string.Join(", ", InferenceBackends.All)} (got '{Backend}')"
        : Models.Count > 0 && string.IsNullOrWhiteSpace(ModelDirectory) ? "Inference:Models needs Inference:ModelDirectory (the first model) set"
        : Models.Count > 16 ? "Inference:Models holds at most 16 models"
        : Models.FirstOrDefault(m => m.Problem() is not null) is { } bad ? bad.Problem()
        : !Enum.IsDefined(WeightFormat) ? "Inference:WeightFormat must be Auto, F32, BF16 or Q8"
        : !Enum.IsDefined(KvCacheFormat) ? "Inference:KvCacheFormat must be f32 or bf16"
        : InferenceBackends.KvCacheFormatProblem(Backend, KvCacheFormat) is { } kv ? kv
        : !Enum.IsDefined(AdapterPageFormat) ? "Inference:AdapterPageFormat must be f32 or bf16"
        : InferenceBackends.AdapterPageFormatProblem(Backend, AdapterPageFormat) is { } ap ? ap
        : MaxContext < 1 ? "Inference:MaxContext must be positive"
        : PrefillChunk < 1 ? "Inference:PrefillChunk must be positive"
        : PoolBytes < 1 ? "Inference:PoolBytes must be positive"
        : TokenBudget < 1 ? "Inference:TokenBudget must be positive"
        : MaxRunningSequences < 1 ? "Inference:MaxRunningSequences must be positive"
        : HostAdapterCacheBytes < 0 ? "Inference:HostAdapterCacheBytes must not be negative"
        : MaxLoraRank < 1 ? "Inference:MaxLoraRank must be positive"
        : SwapSpaceBytes < 0 ? "Inference:SwapSpaceBytes must not be negative"
        : SwapMinTokens < 0 ? "Inference:SwapMinTokens must not be negative"
        : !Enum.IsDefined(SchedulingPolicy) ? "Inference:SchedulingPolicy must be Fcfs or Vtc"
        : !(VtcInputWeight >= 0 && VtcOutputWeight >= 0 && VtcInputWeight + VtcOutputWeight > 0) || double.IsInfinity(VtcInputWeight + VtcOutputWeight)
            ? "Inference:VtcInputWeight and VtcOutputWeight must be finite, not negative, and not both zero"
        : !(VtcFairnessGap >= 0) ? "Inference:VtcFairnessGap must not be negative"
        : !(VtcTrainingWeight >= 0) || double.IsInfinity(VtcTrainingWeight) ? "Inference:VtcTrainingWeight must be finite and not negative"
        : !(TrainingShareWhileServing >= 0 && TrainingShareWhileServing <= 1) ? "Inference:TrainingShareWhileServing must be between 0 and 1"
        : !(TrainingBurstMs >= 0 && TrainingBurstMs <= 60_000) ? "Inference:TrainingBurstMs must be between 0 and 60000"
        : TrainingSliceTokens < 1 ? "Inference:TrainingSliceTokens must be positive"
        : TrainingActivationBytes < 0 ? "Inference:TrainingActivationBytes must not be negative"
        : TrainingRideRows < 0 || TrainingRideRows % 8 != 0 || TrainingRideRows > 4096 ? "Inference:TrainingRideRows must be a multiple of 8 from 0 to 4096"
        : TrainingRideEvery < 1 || TrainingRideEvery > 1000 ? "Inference:TrainingRideEvery must be between 1 and 1000"
        : null;

    /// <summary>The scheduling policy these options choose.</summary>
    public ISchedulingPolicy CreatePolicy() => SchedulingPolicy == SchedulingPolicyKind.Fcfs
        ? new FcfsPolicy()
        : new VtcPolicy(new VtcWeights(VtcInputWeight, VtcOutputWeight), VtcFairnessGap);
}

/// <summary>One more base model of an inference node (an item of Inference:Models).</summary>
public sealed class ServedModelOptions
{
    /// <summary>The public model id; default: the folder's name.</summary>
    public string? Name { get; set; }
    /// <summary>A Hugging Face model folder (config.json, safetensors, tokenizer.json).</summary>
    public string Directory { get; set; } = "";
    /// <summary>Default: Inference:WeightFormat.</summary>
    public WeightFormat? WeightFormat { get; set; }
    /// <summary>Bytes of this model's own page pool; default: Inference:PoolBytes.</summary>
    public long? PoolBytes { get; set; }

    public string? Problem() =>
        string.IsNullOrWhiteSpace(Directory) ? "every item of Inference:Models needs a Directory"
        : Name is { } n && (n.Length is 0 or > 200 || n.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))) ? "Inference:Models:N:Name must be 1-200 characters without spaces"
        : PoolBytes is < 1 ? "Inference:Models:N:PoolBytes must be positive"
        : WeightFormat is { } f && !Enum.IsDefined(f) ? "Inference:Models:N:WeightFormat must be Auto, F32, BF16 or Q8"
        : null;
}
