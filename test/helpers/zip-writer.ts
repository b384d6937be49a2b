/**
 * A zip writer written from the PKWARE APPNOTE, independent of src/formats/zip.ts: the archives
 * torch.save writes (stored entries, optionally ZIP64, data descriptors, aligned data), for the
 * torch.save tests and the fuzz tests that rebuild a checkpoint around a mutated pickle.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

export interface ZipInput {
  name: string;
  data: Uint8Array;
  method?: number;
}

export interface ZipOptions {
  /** Write ZIP64 extra fields and end records, as for archives over 4 GB. */
  zip64?: boolean;
  /** Set flag bit 3: local sizes and CRC are 0, a data descriptor follows the data (as PyTorch does). */
  dataDescriptor?: boolean;
  /** Pad the local extra field so data starts at a multiple of this (PyTorch uses 64). */
  align?: number;
}

export function le(n: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) b.writeBigUInt64LE(BigInt(n));
  else if (bytes === 4) b.writeUInt32LE(n >>> 0);
  else b.writeUInt16LE(n);
  return b;
}

export function buildZip(entries: ZipInput[], opts: ZipOptions = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    offset += b.length;
  };
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = zlibCrc32(e.data) >>> 0;
    const size = e.data.length;
    const flags = (opts.dataDescriptor ? 8 : 0) | 0x800;
    const localOffset = offset;
    let extra = opts.zip64 ? Buffer.concat([le(1, 2), le(16, 2), le(size, 8), le(size, 8)]) : Buffer.alloc(0);
    if (opts.align) {
      const start = localOffset + 30 + name.length + extra.length + 4;
      const pad = (opts.align - (start % opts.align)) % opts.align;
      extra = Buffer.concat([extra, le(0x4246, 2), le(pad, 2), Buffer.alloc(pad, 0x5a)]);
    }
    const sz = opts.zip64 ? 0xffffffff : opts.dataDescriptor ? 0 : size;
    push(
      Buffer.concat([
        le(0x04034b50, 4),
        le(opts.zip64 ? 45 : 20, 2),
        le(flags, 2),
        le(e.method ?? 0, 2),
        le(0, 2),
        le(0, 2),
        le(opts.dataDescriptor ? 0 : crc, 4),
        le(sz, 4),
        le(sz, 4),
        le(name.length, 2),
        le(extra.length, 2),
        name,
        extra,
      ]),
    );
    push(Buffer.from(e.data));
    if (opts.dataDescriptor) {
      push(
        Buffer.concat([
          le(0x08074b50, 4),
          le(crc, 4),
          opts.zip64 ? le(size, 8) : le(size, 4),
          opts.zip64 ? le(size, 8) : le(size, 4),
        ]),
      );
    }
    const cExtra = opts.zip64
      ? Buffer.concat([le(1, 2), le(24, 2), le(size, 8), le(size, 8), le(localOffset, 8)])
      : Buffer.alloc(0);
    central.push(
      Buffer.concat([
        le(0x02014b50, 4),
        le(45, 2),
        le(opts.zip64 ? 45 : 20, 2),
        le(flags, 2),
        le(e.method ?? 0, 2),
        le(0, 2),
        le(0, 2),
        le(crc, 4),
        le(opts.zip64 ? 0xffffffff : size, 4),
        le(opts.zip64 ? 0xffffffff : size, 4),
        le(name.length, 2),
        le(cExtra.length, 2),
        le(0, 2),
        le(0, 2),
        le(0, 2),
        le(0, 4),
        le(opts.zip64 ? 0xffffffff : localOffset, 4),
        name,
        cExtra,
      ]),
    );
  }
  const cdOffset = offset;
  const cd = Buffer.concat(central);
  push(cd);
  if (opts.zip64) {
    const eocd64Offset = offset;
    push(
      Buffer.concat([
        le(0x06064b50, 4),
        le(44, 8),
        le(45, 2),
        le(45, 2),
        le(0, 4),
        le(0, 4),
        le(entries.length, 8),
        le(entries.length, 8),
        le(cd.length, 8),
        le(cdOffset, 8),
      ]),
    );
    push(Buffer.concat([le(0x07064b50, 4), le(0, 4), le(eocd64Offset, 8), le(1, 4)]));
  }
  push(
    Buffer.concat([
      le(0x06054b50, 4),
      le(0, 2),
      le(0, 2),
      le(opts.zip64 ? 0xffff : entries.length, 2),
      le(opts.zip64 ? 0xffff : entries.length, 2),
      le(opts.zip64 ? 0xffffffff : cd.length, 4),
      le(opts.zip64 ? 0xffffffff : cdOffset, 4),
      le(0, 2),
    ]),
  );
  return Buffer.concat(parts);
}
