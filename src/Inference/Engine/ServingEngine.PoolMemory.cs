using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    /// <summary>The scheduler's view of memory, on the pool: KV pages per sequence and adapter pins; preempted caches
    /// swapped to host memory. With <see cref="InferenceOptions.AsyncSwap"/> the swap copies run on the copy thread while
    /// the engine computes, and the loop never waits for one: a swapped-out sequence keeps its pages until its copy is
    /// done (they are taken back at the start of an iteration; a sequence that needs them meanwhile waits an iteration
    /// instead of preempting more), and a swapped-in one is admitted at once but runs once its copy back is done.</summary>
    private sealed class PoolMemory(ServingEngine e) : ISwappingMemory
    {
        public Reservation Attach(Sequence s) => e.AttachCached((Request)s.Handle!);

        public Reservation TryReserve(Sequence s, int tokens)
        {
            var r = (Request)s.Handle!;
            var store = e._store;
            if (r.IsCopying)
            {
                // copying in: not runnable yet (the scheduler asks IsReady first); a copy under way: next iteration (its
                // own pages are on their way back: RoomPending says so)
                if (r.Swap == SwapState.CopyingIn || !r.Copy!.IsCompleted) return Reservation.NoRoom;
                e.TakeBack(r, readmit: true);
            }
            int kvNeed = r.Cache.PagesToReserve(tokens);
            bool needsAdapter = s.AdapterId is not null && r.Adapter is null;
            int adapterNeed = 0;
            if (needsAdapter)
            {
                try { adapterNeed = store.PagesToLoad(s.AdapterId!); }
                catch (KeyNotFoundException) { throw new InvalidOperationException($"adapter '{s.AdapterId}' was unregistered"); }
            }
            if (needsAdapter && r.Cache.SharedBlocks().Any(b => b.Detached))
            {
                // it took cached blocks of an adapter that was unregistered since (and may be registered again with
                // other weights): it starts over from blocks of the adapter as it is now, in the next round
                r.Cache.Release();
                s.Computed = 0;
                return Reservation.NotYet;
            }
            if (kvNeed + adapterNeed == 0 && !needsAdapter) return Reservation.Reserved;
            if (needsAdapter && !WarmInHost(s.AdapterId!)) return Reservation.NotYet;
            // the shared budget (S-LoRA): free pages plus what evicting unpinned adapters and idle cached blocks would free
            // (the request's own adapter is not among what can be freed: it is about to be pinned, even when it is
            // resident and unpinned now; counting it let a request wait for ever with idle cached blocks left in place)
            int cached = e.EvictablePages, reclaimable = Reclaimable(s);
            if (e.Unified ? kvNeed + adapterNeed > e._pool.FreePages + reclaimable + cached
                : kvNeed > e._pool.FreePages + cached || adapterNeed > e._adapterPool.FreePages + reclaimable) return Reservation.NoRoom;
            if (cached > 0) e.EvictCachedFor(kvNeed + (e.Unified ? adapterNeed : 0), e.Unified ? reclaimable : 0);
            if (needsAdapter)
            {
                r.Adapter = store.EnsureResident(s.AdapterId!);
                if (r.Adapter is null) return Reservation.NoRoom;
            }
            if (kvNeed > 0 && !r.Cache.TryReserve(tokens) && !(e.Unified && store.MakeRoom(kvNeed) && r.Cache.TryReserve(tokens)))
            {
                if (needsAdapter)
                {
                    store.Release(r.Adapter!);
                    r.Adapter = null;
                }
                return Reservation.NoRoom;
            }
            if (r.Swap == SwapState.Swapped)
            {
                var swapped = r.Host!;
                if (e._options.AsyncSwap)
                {
                    // copied back on the copy thread while this iteration computes; the sequence runs once it is done
                    swapped.Owner.CheckSwapIn(swapped, r.Cache);
                    var cache = r.Cache;
                    e.StartCopy(r, SwapState.CopyingIn, () => swapped.Owner.CopyIn(swapped, cache, parallel: false));
                    return Reservation.Reserved;
                }
                r.Host = null;
                r.Swap = SwapState.None;
                swapped.Owner.SwapIn(swapped, r.Cache);
            }
            return Reservation.Reserved;
        }

        /// <summary>Pool pages that evicting unpinned adapters would free for the sequence: its own adapter excluded
        /// when it still has to pin it.</summary>
        private int Reclaimable(Sequence s)
        {
            var r = (Request)s.Handle!;
            return s.AdapterId is { } id && r.Adapter is null ? e._store.ReclaimablePagesBesides(id) : e._store.ReclaimablePages;
        }

        public bool CanStart(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (s.AdapterId is not { } id || r.Adapter is not null) return true;
            if (!e._store.IsRegistered(id)) throw new InvalidOperationException($"adapter '{id}' was unregistered");
            return WarmInHost(id, take: false);
        }

        public bool IsReady(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (!r.IsCopying) return true;
            if (r.Swap != SwapState.CopyingIn || !r.Copy!.IsCompletedSuccessfully) return false; // (a failed one ends at the next reap)
            e.TakeBack(r, readmit: false);
            return true;
        }

        public bool RoomPending(Sequence s, int tokens)
        {
            int coming = 0;
            foreach (var c in e._copies)
                if (c.Swap != SwapState.CopyingIn) coming += c.Cache.PagesHeld;
            if (coming == 0) return false;
            var r = (Request)s.Handle!;
            var store = e._store;
            int kvNeed = r.Cache.PagesToReserve(tokens);
            int adapterNeed = 0;
            if (s.AdapterId is not null && r.Adapter is null)
            {
                try { adapterNeed = store.PagesToLoad(s.AdapterId); }
                catch (KeyNotFoundException) { return false; } // unregistered meanwhile: TryReserve reports it
            }
            return e.Unified ? kvNeed + adapterNeed <= e._pool.FreePages + Reclaimable(s) + e.EvictablePages + coming
                : kvNeed <= e._pool.FreePages + e.EvictablePages + coming;
        }

        public bool TrySwapOut(Sequence s)
        {
            var r = (Request)s.Handle!;
            if (r.IsCopying)
            {
                // preempted again before its copy back was used: the host copy still holds its tokens; the pages go
                // back once the copy is done
                r.Swap = SwapState.CopyInUndone;
                ReleaseAdapter(r);
                return true;
            }
            if (e._swap is null || s.Computed < e._options.SwapMinTokens || r.Cache.Length != s.Computed || r.Swap != SwapState.None) return false;
            if (!e._options.AsyncSwap)
            {
                if (e._swap.SwapOut(r.Cache) is not { } copied) return false;
                Release(s);
                r.Host = copied;
                r.Swap = SwapState.Swapped;
                return true;
            }
            if (e._swap.BeginSwapOut(r.Cache) is not { } swapped) return false;
            e.DropClaims(r);
            // copied on the copy thread while the next iteration computes; its pages are taken back once that is done
            ReleaseAdapter(r);
            r.Host = swapped;
            var cache = r.Cache;
            var space = e._swap;
            e.StartCopy(r, SwapState.CopyingOut, () => space.CopyOut(cache, swapped, parallel: false));
            return true;
        }

        /// <summary>Never stall a running batch on a disk read: when sequences are running and the adapter is neither in
        /// the pool nor in host memory, read it on the thread pool and admit the sequence in a later iteration. Once that
        /// read is done (cached, or not cacheable, or failed) the synchronous path runs and reports any error.
        /// <paramref name="take"/>: false only asks (the read's completion stays for the reservation that follows).</summary>
        private bool WarmInHost(string id, bool take = true)
        {
            var store = e._store;
            if (e._scheduler.Running.Count == 0 || store.IsResident(id) || store.IsInHostCache(id))
            {
                e._hostLoads.Remove(id);
                return true;
            }
            if (!e._hostLoads.TryGetValue(id, out var read))
            {
                e._hostLoads[id] = store.Prefetch([id]);
                return false;
            }
            if (!read.IsCompleted) return false;
            if (take) e._hostLoads.Remove(id);
            return true;
        }

        public void Release(Sequence s)
        {
            var r = (Request)s.Handle!;
            ReleaseAdapter(r);
            e.DropClaims(r);
            if (r.IsCopying)
            {
                // its pages and host buffer are the copy's until it ends: freed when the loop takes the copy back
                r.Swap = SwapState.Orphaned;
                return;
            }
            if (r.Host is { } swapped)
            {
                r.Host = null;
                r.Swap = SwapState.None;
                swapped.Owner.Drop(swapped);
            }
            r.Cache.Release();
        }

        public void ReleaseAdapter(Request r)
        {
            if (r.Adapter is { } a)
            {
                r.Adapter = null;
                e._store.Release(a);
            }
        }
    }
}
