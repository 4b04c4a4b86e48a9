using System.Threading.Channels;
using Loom.Inference.Memory;
using Loom.Inference.Scheduling;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    /// <summary>A request's engine-side state: its channel, sampler, text streaming, KV cache and adapter pin, and where
    /// its KV stands (<see cref="Swap"/>).</summary>
    private sealed class Request(ServingEngine engine, Sequence sequence, int maxNew, Sampler sampler, IStreamingDecoder? decoder,
        StopStringMatcher stops, HashSet<int> stopIds, int? logprobs, PagedKvCache cache)
    {
        public readonly ServingEngine Engine = engine;
        public readonly Sequence Sequence = sequence;
        public readonly int MaxNew = maxNew;
        public readonly Sampler Sampler = sampler;
        public readonly IStreamingDecoder? Decoder = decoder;
        public readonly StopStringMatcher Stops = stops;
        public readonly HashSet<int> StopIds = stopIds;
        public readonly int? Logprobs = logprobs;
        public readonly PagedKvCache Cache = cache;
        public readonly Channel<GenerationEvent> Channel = System.Threading.Channels.Channel.CreateUnbounded<GenerationEvent>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        public AdapterResidency? Adapter;   // pinned while the sequence runs
        public SwapState Swap;              // where its KV stands; Host and Copy are set exactly as this says
        public SwappedKv? Host;             // its KV in host memory: set in every state but None
        public Task? Copy;                  // its swap copy on the copy thread, until the loop takes it back: set in the copy states
        public readonly List<UInt128> BlockHashes = []; // prefix caching: hash chain of its full blocks, as far as computed so far
        public int Published;               // prefix caching: leading blocks already offered to the block cache
        public int Sampled;                 // tokens sampled so far (the stop token included)
        public int CancelRequested;
        public bool Closed;

        /// <summary>A swap copy of this request runs on the copy thread or is done but not yet taken back.</summary>
        public bool IsCopying => Swap is SwapState.CopyingOut or SwapState.CopyingIn or SwapState.CopyInUndone or SwapState.Orphaned;
    }

    /// <summary>Where a request's KV stands. A copy state says what happens to its pages once the loop takes the copy
    /// back (<see cref="TakeBack"/>).</summary>
    private enum SwapState
    {
        /// <summary>Its KV is in its pages only (or it has none yet).</summary>
        None,
        /// <summary>Its KV is in host memory (preempted by swap), no copy under way.</summary>
        Swapped,
        /// <summary>KV pages → host copy: the pages go back to the pool (a sequence readmitted first keeps them).</summary>
        CopyingOut,
        /// <summary>host copy → reserved pages: the sequence becomes runnable.</summary>
        CopyingIn,
        /// <summary>A copy in whose sequence was preempted again before it ran: the pages go back, the host copy stays.</summary>
        CopyInUndone,
        /// <summary>The request left the engine while its copy ran: everything is freed once the copy is done.</summary>
        Orphaned,
    }
}
