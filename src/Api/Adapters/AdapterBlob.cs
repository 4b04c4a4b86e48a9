using System.Formats.Tar;
using Loom.Data.Blobs;

namespace Loom.Api.Adapters;

/// <summary>
/// An adapter is stored as one blob: an uncompressed tar of adapter_config.json and
/// adapter_model.safetensors, written with fixed metadata so equal adapters get equal hashes.
/// </summary>
public static class AdapterBlob
{
    private static readonly DateTimeOffset FixedTime = DateTimeOffset.UnixEpoch;

    public static async Task<BlobRef> StoreAsync(IBlobStore blobs, string folder, CancellationToken ct)
    {
        var temp = Path.GetTempFileName();
        try
        {
            await using (var file = File.Create(temp))
            // Ustar: no extended attributes (PAX would record access and change times), so equal input gives equal bytes.
            await using (var tar = new TarWriter(file, TarEntryFormat.Ustar, leaveOpen: false))
            {
                foreach (var name in new[] { AdapterUpload.ConfigFile, AdapterUpload.WeightsFile })
                {
                    await using var data = File.OpenRead(Path.Combine(folder, name));
                    var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
                    {
                        DataStream = data, ModificationTime = FixedTime, Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                    };
                    await tar.WriteEntryAsync(entry, ct);
                }
            }
            await using var content = File.OpenRead(temp);
            return await blobs.PutAsync(content, ct);
        }
        finally
        {
            File.Delete(temp);
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
