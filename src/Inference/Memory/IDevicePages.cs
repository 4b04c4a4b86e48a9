namespace Loom.Inference.Memory;

/// <summary>A device copy of a <see cref="PagePool"/> that holds newer contents than the host for some pages: the GPU
/// backend keeps the keys and values it writes on the device only (decision 010), so the host asks for the pages it is
/// about to read (KV swap-out, a finished request's KV going to the prefix cache).</summary>
public interface IDevicePages
{
    /// <summary>Makes the host copy of <paramref name="pages"/> current: copies device → host those the device wrote since
    /// the host last had them, and waits for the copies. Called on the thread that runs the forward passes.</summary>
    void ToHost(ReadOnlySpan<int> pages);

    /// <summary>The pool is being disposed: let go of anything that refers to its host buffer.</summary>
    void Detach();
}
