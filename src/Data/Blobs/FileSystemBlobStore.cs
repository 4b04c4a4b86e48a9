using System.Security.Cryptography;
using Microsoft.Extensions.Options;

namespace Loom.Data.Blobs;

/// <summary>Bound from "Loom:Blobs".</summary>
public sealed class BlobStoreOptions
{
    public string Root { get; set; } = ".data/blobs";
}

/// <summary>
/// Blobs as files under Root/ab/abcdef... named by their SHA-256. Writes go to a temporary file that
/// is hashed while copying, fsynced and renamed into place, so a reader never sees a partial blob.
/// </summary>
public sealed class FileSystemBlobStore(IOptions<BlobStoreOptions> options) : IBlobStore
{
    private readonly string _root = Path.GetFullPath(options.Value.Root);

    public async Task<BlobRef> PutAsync(Stream content, CancellationToken ct = default)
    {
        Directory.CreateDirectory(_root);
        var temp = Path.Combine(_root, $".incoming-{Guid.NewGuid():N}");
        try
        {
            string sha;
            long length;
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                var buffer = new byte[1 << 16];
                int n;
                while ((n = await content.ReadAsync(buffer, ct)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                    await file.WriteAsync(buffer.AsMemory(0, n), ct);
                }
                await file.FlushAsync(ct);
                // on disk before the rename: a blob under its name is whole after a crash (a database row may refer to it
                // as soon as this returns)
                file.Flush(flushToDisk: true);
                length = file.Length;
                sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            }
            var path = PathOf(sha);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            if (File.Exists(path))
            {
                // Equal content is there already: mark it as written now, so blob collection's grace period
                // protects it until the row that refers to it is committed.
                File.Delete(temp);
                File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
            }
            else File.Move(temp, path);
            return new BlobRef(sha, length);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public Stream OpenRead(string sha256) => new VerifyingStream(File.OpenRead(PathOf(sha256)), sha256);

    public bool Exists(string sha256) => File.Exists(PathOf(sha256));

    public Task DeleteAsync(string sha256, CancellationToken ct = default)
    {
        var path = PathOf(sha256);
        if (File.Exists(path)) File.Delete(path);
        return Task.CompletedTask;
    }

    public IEnumerable<StoredBlob> List()
    {
        if (!Directory.Exists(_root)) yield break;
        foreach (var dir in Directory.EnumerateDirectories(_root))
        {
            if (Path.GetFileName(dir).Length != 2) continue;
            foreach (var file in Directory.EnumerateFiles(dir))
            {
                var name = Path.GetFileName(file);
                if (!IsBlobId(name)) continue;
                var info = new FileInfo(file);
                if (!info.Exists) continue;
                yield return new StoredBlob(name, info.Length, new DateTimeOffset(info.LastWriteTimeUtc, TimeSpan.Zero));
            }
        }
    }

    public async Task<bool> CollectAsync(string sha256, DateTimeOffset writtenBefore, Func<CancellationToken, Task<bool>> isReferenced, CancellationToken ct = default)
    {
        var path = PathOf(sha256);
        if (!File.Exists(path) || File.GetLastWriteTimeUtc(path) >= writtenBefore.UtcDateTime) return false;
        if (await isReferenced(ct)) return false;
        // Move it out of reach first: from here on a Put of the same content writes a fresh copy. Then look again:
        // a Put that came before the move refreshed the write time, and a row committed since refers to it.
        var doomed = Path.Combine(_root, $".collect-{sha256}-{Guid.NewGuid():N}");
        try { File.Move(path, doomed); }
        catch (FileNotFoundException) { return false; }
        if (File.GetLastWriteTimeUtc(doomed) < writtenBefore.UtcDateTime && !await isReferenced(CancellationToken.None))
        {
            File.Delete(doomed);
            return true;
        }
        // Still wanted: put it back unless a fresh copy (equal content) was written meanwhile.
        try { File.Move(doomed, path); }
        catch (IOException) when (File.Exists(path)) { File.Delete(doomed); }
        return false;
    }

    private static bool IsBlobId(string s) => s.Length == 64 && s.AsSpan().IndexOfAnyExcept("0123456789abcdef") < 0;

    private string PathOf(string sha256)
    {
        if (!IsBlobId(sha256))
            throw new ArgumentException("A blob id is 64 lower-case hex characters.", nameof(sha256));
        return Path.Combine(_root, sha256[..2], sha256);
    }

    /// <summary>Hashes while reading; at end of stream, throws if the content no longer matches its name.</summary>
    private sealed class VerifyingStream(FileStream inner, string expected) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private bool _checked;

        public override int Read(byte[] buffer, int offset, int count) => Check(inner.Read(buffer, offset, count), buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer) => Check(inner.Read(buffer), buffer);
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => Check(await inner.ReadAsync(buffer, ct), buffer.Span);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        private int Check(int n, ReadOnlySpan<byte> data)
        {
            if (n > 0) _hash.AppendData(data[..n]);
            // Zero bytes for an empty buffer is not the end of the stream.
            else if (!_checked && data.Length > 0)
            {
                _checked = true;
                if (Convert.ToHexStringLower(_hash.GetHashAndReset()) != expected) throw new BlobCorruptException(expected);
            }
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) { inner.Dispose(); _hash.Dispose(); }
            base.Dispose(disposing);
        }
    }
}
