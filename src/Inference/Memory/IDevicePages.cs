namespace Loom.Inference.Memory;

/// <summary>A device copy of a <see cref="PagePool"/> that holds newer contents than the host for some pages: the GPU
/// backend keeps the keys and values it writes on the device only (decision 010), so the host asks for the pages it is
/// about to read (KV swap-out). The copies run while the device computes; the host waits for them only where it reads
/// the pages (<see cref="DeviceCopies.Wait"/>), and the pool waits for them before it hands a page out again
/// (<see cref="Reusing"/>), so a late copy never lands in a page that has a new owner.</summary>
public interface IDevicePages
{
    /// <summary>Issues the device → host copies that make the host copy of <paramref name="pages"/> current (those the
    /// device wrote since the host last had them) and returns without waiting; the host reads the pages only after the
    /// returned copies' <see cref="DeviceCopies.Wait"/>, which covers copies of these pages issued earlier too. Called on
    /// the thread that runs the forward passes, between them.</summary>
    DeviceCopies ToHost(ReadOnlySpan<int> pages);

    /// <summary>Waits for the device → host copies issued up to <paramref name="ticket"/>. Any thread.</summary>
    void Wait(long ticket);

    /// <summary>The pool is handing <paramref name="pages"/> out again (their allocation count moved): waits for any
    /// device → host copy into them still under way, before the new owner writes them.</summary>
    void Reusing(ReadOnlySpan<int> pages);

    /// <summary>The pool is being disposed: let go of anything that refers to its host buffer (after the copies into it).</summary>
    void Detach();
}

/// <summary>Device → host copies in flight (<see cref="IDevicePages.ToHost"/>); default: none.</summary>
public readonly record struct DeviceCopies(IDevicePages? Device, long Ticket)
{
    /// <summary>Waits until the copies have landed in the host pages. Any thread.</summary>
    public void Wait() => Device?.Wait(Ticket);
}
