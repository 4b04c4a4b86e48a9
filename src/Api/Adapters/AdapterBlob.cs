using System.Formats.Tar;
using System.IO.Pipelines;
using System.Security.Cryptography;
using Loom.Data.Blobs;

namespace Loom.Api.Adapters;

/// <summary>
/// An adapter is stored as one blob: an uncompressed tar of adapter_config.json and
/// adapter_model.safetensors, written with fixed metadata so equal adapters get equal hashes (and an unpacked
/// folder can be checked against the blob's hash by writing its tar again).
/// </summary>
public static class AdapterBlob
{
    private static readonly DateTimeOffset FixedTime = DateTimeOffset.UnixEpoch;
    private static readonly string[] Files = [AdapterUpload.ConfigFile, AdapterUpload.WeightsFile];

    /// <summary>Stores the folder's tar, streamed into the blob store (no temporary copy).</summary>
    public static Task<BlobRef> StoreAsync(IBlobStore blobs, string folder, CancellationToken ct) =>
        ThroughTarAsync(folder, s => blobs.PutAsync(s, ct), ct);

    /// <summary>The SHA-256 (hex) the folder's blob would have.</summary>
    public static Task<string> HashFolderAsync(string folder, CancellationToken ct) =>
        ThroughTarAsync(folder, async s => Convert.ToHexStringLower(await SHA256.HashDataAsync(s, ct)), ct);

    /// <summary>Writes the folder's tar into a pipe while <paramref name="consume"/> reads it.</summary>
    private static async Task<T> ThroughTarAsync<T>(string folder, Func<Stream, Task<T>> consume, CancellationToken ct)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19));
        var writing = Task.Run(async () =>
        {
            try
            {
                await using var to = pipe.Writer.AsStream();
                await WriteTarAsync(to, folder, ct);
            }
            catch (Exception e)
            {
                await pipe.Writer.CompleteAsync(e);
                throw;
            }
        }, ct);
        try
        {
            await using var from = pipe.Reader.AsStream();
            var result = await consume(from);
            await writing;
            return result;
        }
        finally
        {
            await pipe.Reader.CompleteAsync();
            try { await writing; } catch (Exception) when (!writing.IsCompletedSuccessfully) { /* the reader's error is the one reported */ }
        }
    }

    private static async Task WriteTarAsync(Stream to, string folder, CancellationToken ct)
    {
        // Ustar: no extended attributes (PAX would record access and change times), so equal input gives equal bytes.
        await using var tar = new TarWriter(to, TarEntryFormat.Ustar, leaveOpen: true);
        foreach (var name in Files)
        {
            await using var data = File.OpenRead(Path.Combine(folder, name));
            var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
            {
                DataStream = data, ModificationTime = FixedTime, Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            };
            await tar.WriteEntryAsync(entry, ct);
        }
    }

    /// <summary>Writes the adapter's two files into <paramref name="folder"/> (verifying the blob's hash).</summary>
    public static async Task ExtractAsync(IBlobStore blobs, string sha256, string folder, CancellationToken ct)
    {
        Directory.CreateDirectory(folder);
        await using var blob = blobs.OpenRead(sha256);
        await using var tar = new TarReader(blob);
        while (await tar.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            if (entry.Name is not (AdapterUpload.ConfigFile or AdapterUpload.WeightsFile) || entry.DataStream is null) continue;
            await using var to = File.Create(Path.Combine(folder, entry.Name));
            await entry.DataStream.CopyToAsync(to, ct);
        }
        // Read to the end so the store checks the hash.
        await blob.CopyToAsync(Stream.Null, ct);
    }
}
