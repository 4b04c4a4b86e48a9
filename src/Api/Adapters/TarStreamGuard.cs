using System.Buffers.Binary;
using Loom.Api.Completions;

namespace Loom.Api.Adapters;

/// <summary>
/// Sits between the gzip stream and <see cref="System.Formats.Tar.TarReader"/> and follows the tar's 512-byte blocks
/// as they pass. It refuses, before the reader sees the header, an archive whose metadata record (PAX extended
/// header, GNU long name) declares more than a few KiB (the reader would allocate it whole), one with too many
/// entries, and one that unpacks to more than the byte budget.
/// </summary>
internal sealed class TarStreamGuard(Stream inner, long maxBytes, int maxEntries, int maxMetadataBytes) : Stream
{
    private const int Block = 512;
    private readonly byte[] _header = new byte[Block]; // (512) the header block being collected
    private int _headerFill;
    private long _dataLeft; // bytes of entry data (padded to blocks) still to pass before the next header
    private long _total;
    private int _entries;
    private byte[]? _pax; // (record size) the data of a PAX record being collected, to look for a size override
    private int _paxFill;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer);
        Follow(buffer[..n]);
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        var n = await inner.ReadAsync(buffer, ct);
        Follow(buffer.Span[..n]);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    private void Follow(ReadOnlySpan<byte> bytes)
    {
        _total += bytes.Length;
        if (_total > maxBytes) throw new InvalidRequestException($"The archive unpacks to more than {maxBytes} bytes.", "file", "archive_too_large");
        while (bytes.Length > 0)
        {
            if (_dataLeft > 0)
            {
                var skip = (int)Math.Min(_dataLeft, bytes.Length);
                if (_pax is not null) Collect(bytes[..skip]);
                _dataLeft -= skip;
                bytes = bytes[skip..];
                continue;
            }
            var take = Math.Min(Block - _headerFill, bytes.Length);
            bytes[..take].CopyTo(_header.AsSpan(_headerFill));
            _headerFill += take;
            bytes = bytes[take..];
            if (_headerFill == Block)
            {
                _headerFill = 0;
                OnHeader();
            }
        }
    }

    private void OnHeader()
    {
        if (_header.AsSpan().IndexOfAnyExcept((byte)0) < 0) return; // end-of-archive blocks
        if (++_entries > maxEntries)
            throw new InvalidRequestException($"The archive holds more than {maxEntries} entries.", "file", "archive_too_many_entries");
        var size = Size(_header.AsSpan(124, 12));
        var type = (char)_header[156];
        if (type is 'x' or 'g' or 'L' or 'K' && size > maxMetadataBytes)
            throw new InvalidRequestException($"The archive has a {size}-byte metadata record (at most {maxMetadataBytes} are read).", "file", "archive_header_too_large");
        // Directories, links and devices have no data whatever the size field says.
        if (type is '1' or '2' or '3' or '4' or '5' or '6') size = 0;
        _dataLeft = (size + Block - 1) / Block * Block;
        if (type is 'x' or 'g' && size > 0) (_pax, _paxFill) = (new byte[size], 0);
    }

    /// <summary>
    /// A PAX "size" record would make the next entry's data length differ from its header, and this guard lose its
    /// place in the blocks; no adapter needs one (it serves files over 8 GiB), so it is refused.
    /// </summary>
    private void Collect(ReadOnlySpan<byte> bytes)
    {
        var take = Math.Min(_pax!.Length - _paxFill, bytes.Length);
        bytes[..take].CopyTo(_pax.AsSpan(_paxFill));
        _paxFill += take;
        if (_paxFill < _pax.Length) return;
        var records = _pax;
        _pax = null;
        if (records.AsSpan().IndexOf(" size="u8) >= 0)
            throw new InvalidRequestException("The archive has a PAX 'size' record; adapters never need one.", "file", "archive_unsupported");
    }

    /// <summary>The size field: octal text, or base-256 when the high bit of the first byte is set.</summary>
    private static long Size(ReadOnlySpan<byte> field)
    {
        if ((field[0] & 0x80) != 0)
        {
            // Base-256: the value is in the last 8 bytes; a negative or huge one is refused as too large.
            if ((field[0] & 0x40) != 0 || field[1..4].IndexOfAnyExcept((byte)0) >= 0) return long.MaxValue / 2;
            var v = BinaryPrimitives.ReadInt64BigEndian(field[4..]);
            return v < 0 ? long.MaxValue / 2 : v;
        }
        long value = 0;
        foreach (var b in field)
        {
            if (b is (byte)' ' or 0) { if (value > 0) break; continue; }
            if (b is < (byte)'0' or > (byte)'7') throw new InvalidRequestException("The .tar.gz archive is corrupt: a header's size field is not octal.", "file");
            value = value * 8 + (b - '0');
        }
        return value;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _total; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
