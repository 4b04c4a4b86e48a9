// Loom benchmarks: a console program that prints ratios measured side by side in one run.
// Usage: dotnet run -c Release --project tests/Benchmarks -- <suite>
//   engine [--quick] [--no-1b] [--llama F] [--png PREFIX]
//                                memory bandwidth, FMA peak, decode (batch 1..32) and prefill (64..512 tokens) on random
//                                models; plots PREFIX-decode-batch.png (beside llama.cpp's figures read from F, the
//                                saved output of ../shared/anchors/llamacpp.sh) and PREFIX-prefill-peak.png
//   engine alloc [--quick]       managed bytes allocated per decode step (forward, sampling) in steady state
//   engine decode [--type bf16|f32|q8] [--batch N] [--steps N] [--warmup-seconds S] [--unfused] [--prefill N] [--prompt N]
//                 [--kv f32,bf16 [--rounds N]]
//                                one decode figure alone after a warm-up (A/B runs of two builds back to back; --unfused:
//                                without the fused matmul epilogues; --prefill N: N-token prefills instead of decode steps;
//                                --prompt N: decode after N-token prompts; --kv: KV caches in pool pages of each format
//                                listed, alternated in N rounds, medians)
//   engine attention             decode attention of one KV group: its heads together against one after another
//   engine checksum              a hash of the exact logits bits of prefill and batched decode (two builds compared)
//   engine gguf FILE...          loads llama.cpp GGUF files (F32/F16/BF16/Q8_0) and times decode at batch 1
//   matmul                       the matmul kernel alone at several shapes and batch sizes
//   matmul epilogue [--workers N] [--type T]
//                                the MLP's matmuls with fused epilogues (SiLU·mul, residual add) against separate passes
//   model --out DIR [--tokenizer DIR]
//                                writes a model folder of random bf16 weights in the SmolLM2-135M shape with another
//                                folder's tokenizer (default models/loom-demo), for tests/Benchmarks.Http/run.sh DIR
//   serving [--quick]            multi-adapter serving on S-LoRA's workload shape (throughput vs adapters, LoRA
//                                overhead, merge-and-swap baseline, unified vs partitioned pool, latency)
//   serving slora [--quick] [--rounds N] [--png F]
//                                S-LoRA's setting (rank 8 on q/k/v/o, every adapter in host memory): registration of
//                                10,000 adapters, throughput with 5..2,000 adapters (median of rounds), mixed ranks
//   fairness [--quick] [--png F] [--gap N] [--swap-min N] [--rounds N]
//                                one tenant flooding at 4x the others' rate: FCFS vs VTC latency of the others against
//                                their solo run and against the flood sending its fair share (median of N rounds),
//                                service gap between backlogged tenants over time (PNG), swap bandwidth, time spent on
//                                preemption, multi-turn time to first token with and without prefix reuse
//   training [speed|coserve|ride|quality] [--quick] [--share X] [--burst MS] [--ride-rows N] [--ride-every N] [--png F]
//                                LoRA fine-tuning on the SmolLM2-135M shape against PyTorch eager CPU (same run);
//                                inference latency and training throughput co-served vs alone (PNG); held-out exact
//                                match on models/loom-demo before and after fine-tuning
//   finetuning [checkpoint [--quick] | e2e]
//                                fine-tuning checkpoints: the loop's stall per checkpoint against the step time, and the
//                                checkpoint write against a plain copy of the same bytes; e2e: upload, train and chat
//                                on models/loom-demo through the HTTP API (tests/Benchmarks/FineTuning/run-e2e.sh)
//   prefix [--quick] [--rounds N]
//                                time to first token with a shared 512-token system prompt: no reuse vs automatic
//                                prefix caching on pool pages (burst, one at a time, multi-turn)
//   cluster [--quick] [--rounds N]
//                                Loom split by role as real processes on loopback (PostgreSQL from LOOM_TEST_PG): tokens/s
//                                and TTFT of one trace with the engine in-process, over the RPC to one inference node, and
//                                to two (scaling factor, routing overhead, adapter-affinity hit rate); median of rounds
//   cluster load [--minutes M]   the cluster at twice its measured capacity for M minutes (default 5): statuses, memory
//                                of every node, the pools' audit at the end
//   constrained [--quick]        structured outputs: the token-mask trie walk at 49k and 128k vocabularies, and decode at
//                                batch 8 with and without a JSON schema on every sequence
using Loom.Benchmarks;

string suite = args.Length > 0 ? args[0] : "";
switch (suite)
{
    case "engine" when args.Length > 1 && args[1] == "alloc":
        AllocationBenchmark.Run(quick: args.Contains("--quick"));
        return 0;
    case "engine" when args.Length > 1 && args[1] == "gguf":
        GgufBenchmark.Run(args[2..]);
        return 0;
    case "engine" when args.Length > 1 && args[1] == "decode":
        DecodeBenchmark.Run(args[2..]);
        return 0;
    case "engine" when args.Length > 1 && args[1] == "attention":
        GroupAttentionBenchmark.Run();
        return 0;
    case "engine" when args.Length > 1 && args[1] == "checksum":
        ChecksumBenchmark.Run();
        return 0;
    case "engine":
        EngineBenchmark.Run(quick: args.Contains("--quick"), include1B: !args.Contains("--no-1b"),
            llamaLog: Option(args, "--llama"), pngPrefix: Option(args, "--png") ?? "tests/Benchmarks/engine");
        return 0;
    case "model":
        ModelFolder.Run(args[1..]);
        return 0;
    case "matmul" when args.Length > 1 && args[1] == "epilogue":
        EpilogueBenchmark.Run(args[2..]);
        return 0;
    case "matmul":
        MatMulBenchmark.Run(args[1..]);
        return 0;
    case "serving" when args.Length > 1 && args[1] == "slora":
        SLoraSettingBenchmark.Run(args[2..]);
        return 0;
    case "serving":
        ServingBenchmark.Run(args[1..]);
        return 0;
    case "fairness":
        FairnessBenchmark.Run(args[1..]);
        return 0;
    case "training":
        TrainingBenchmark.Run(args[1..]);
        return 0;
    case "finetuning":
        Loom.Benchmarks.FineTuning.FineTuningBenchmark.Run(args[1..]);
        return 0;
    case "prefix":
        PrefixBenchmark.Run(args[1..]);
        return 0;
    case "cluster":
        ClusterBenchmark.Run(args[1..]);
        return Environment.ExitCode;
    case "constrained":
        ConstrainedBenchmark.Run(args[1..]);
        return 0;
    default:
        Console.WriteLine("usage: dotnet run -c Release --project tests/Benchmarks -- engine [--quick] [--no-1b]");
        return suite.Length == 0 ? 0 : 2;
}

static string? Option(string[] args, string name) =>
    Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
