using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Loom.Inference.Formats;

/// <summary>A tensor to write: raw little-endian bytes with their dtype and shape.</summary>
public sealed record TensorData(string Name, TensorDType DType, long[] Shape, ReadOnlyMemory<byte> Bytes)
{
    public static TensorData F32(string name, long[] shape, float[] values) =>
        new(name, TensorDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    public static TensorData BF16(string name, long[] shape, ushort[] values) =>
        new(name, TensorDType.BF16, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
}

/// <summary>Writes safetensors files (header padded with spaces to an 8-byte boundary, tensors in the given order).</summary>
public static class SafetensorsWriter
{
    public static void Write(string path, IReadOnlyList<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        Write(fs, tensors, metadata);
    }

    public static void Write(Stream stream, IReadOnlyList<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                long count = 1;
                foreach (var d in t.Shape) count *= d;
                if (count * TensorDTypes.SizeOf(t.DType) != t.Bytes.Length)
                    throw new ArgumentException($"tensor '{t.Name}': shape [{string.Join(',', t.Shape)}] does not match {t.Bytes.Length} bytes");
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", TensorDTypes.ToName(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Bytes.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Bytes.Length;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < pad; i++) buffer.WriteByte((byte)' ');
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)buffer.Length);
        stream.Write(len);
        buffer.Position = 0;
        buffer.CopyTo(stream);
        foreach (var t in tensors) stream.Write(t.Bytes.Span);
    }
}
