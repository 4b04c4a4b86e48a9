using System.Buffers.Binary;
using Loom.Api.Completions;

namespace Loom.Api.Adapters;

/// <summary>
/// Reads a .zip's end-of-central-directory record (and its ZIP64 twin) before <see cref="System.IO.Compression.ZipArchive"/>
/// does, and refuses an archive that declares more entries, or a larger central directory, than an adapter needs:
/// the archive reader builds an object per entry up front.
/// </summary>
internal static class ZipDirectoryCheck
{
    private const int EocdSize = 22;
    private const int MaxComment = ushort.MaxValue;
    private const int BytesPerEntry = 4096; // a central directory record with a long name and extra fields

    public static void Check(Stream s, int maxEntries)
    {
        var length = s.Length;
        if (length < EocdSize) return; // too short to be a zip: the archive reader reports it
        var tailLength = (int)Math.Min(length, EocdSize + MaxComment + 20);
        var tail = new byte[tailLength]; // (tailLength) the end of the file: EOCD, its comment, the ZIP64 locator
        s.Position = length - tailLength;
        s.ReadExactly(tail);
        s.Position = 0;

        var at = -1;
        for (var i = tailLength - EocdSize; i >= 0; i--)
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == 0x06054b50) { at = i; break; }
        if (at < 0) return; // no directory: the archive reader reports it

        ulong entries = BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(at + 10));
        ulong directoryBytes = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(at + 12));
        var offset = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(at + 16));
        if ((entries == ushort.MaxValue || directoryBytes == uint.MaxValue || offset == uint.MaxValue) && at >= 20
            && BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(at - 20)) == 0x07064b50)
        {
            var zip64At = BinaryPrimitives.ReadUInt64LittleEndian(tail.AsSpan(at - 20 + 8));
            if (zip64At > (ulong)(length - 56)) throw Corrupt();
            var record = new byte[56]; // (56) the ZIP64 end-of-central-directory record
            s.Position = (long)zip64At;
            s.ReadExactly(record);
            s.Position = 0;
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != 0x06064b50) throw Corrupt();
            entries = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32));
            directoryBytes = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40));
        }
        if (entries > (ulong)maxEntries)
            throw new InvalidRequestException($"The archive holds {entries} entries; at most {maxEntries} are accepted.", "file", "archive_too_many_entries");
        if (directoryBytes > (ulong)maxEntries * BytesPerEntry)
            throw new InvalidRequestException($"The archive's directory is {directoryBytes} bytes; at most {(long)maxEntries * BytesPerEntry} are accepted.", "file", "archive_too_many_entries");
    }

    private static InvalidRequestException Corrupt() => new("The .zip archive is corrupt: its ZIP64 directory record is missing.", "file");
}
