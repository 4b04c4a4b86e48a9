// The GPU checks and benchmarks of the inference tier (docs/decisions/010-ilgpu-backend.md, BENCHMARKS.md "GPU (ILGPU)").
// Usage: Loom.Gpu.Runner <command> [--backend cuda|ilgpu-cpu|cpu] [--quick] [--tiny: a tiny model shape, to try the paths]
//   golden <models-dir>   the golden-logit checks (prefill and cached decode of each tests/golden/models/* against the
//                         oracle, 1e-4) and the greedy argmax on the device; exit code 1 on a failure
//   decode                Llama-3.2-1B-shaped random bf16 model: device memory bandwidth, decode at batch 1 against the
//                         bandwidth floor, batched decode at 8, 64 and 256 sequences
//   sampling              sampling on the device against the host sampler (every mode: the same ids, logprobs within
//                         1e-4) and the time of one device sampling step at 64 rows x 128,256 [--quick: small vocab only]
//   serving               the S-LoRA trace (inputs and outputs U[8,512), rank 8 on q/k/v/o) with 5, 100, 1,000 and 2,000
//                         adapters and the base model alone, on the Llama-3.2-1B shape [--requests N]
using Loom.Gpu.Runner;

string command = args.Length > 0 ? args[0] : "";
string backend = Args.Value(args, "--backend") ?? "cuda";
bool quick = args.Contains("--quick");
try
{
    return command switch
    {
        "golden" when args.Length > 1 => GoldenCheck.Run(args[1], backend),
        "sampling" => SamplingCheck.Run(backend, quick),
        "decode" => DecodeBenchmark.Run(backend, quick, Args.Shape(args)),
        "serving" => ServingTrace.Run(backend, quick, Args.Shape(args), int.TryParse(Args.Value(args, "--requests"), out int n) ? n : 0),
        _ => Usage(),
    };
}
catch (Exception e)
{
    Console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
    return 3;
}

static int Usage()
{
    Console.WriteLine("usage: Loom.Gpu.Runner golden <models-dir> | sampling | decode | serving  [--backend cuda|ilgpu-cpu|cpu] [--quick]");
    return 2;
}
