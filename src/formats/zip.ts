/**
 * A read-only zip reader for the archives `torch.save` writes: it finds the End Of Central
 * Directory (and the ZIP64 one for archives over 4 GB or 65535 entries), reads the central
 * directory, and locates each entry's data from its *local* header (whose own name and extra
 * lengths decide where data starts; its size fields may be 0 when flag bit 3 is set, so sizes come
 * from the central directory). Only stored (uncompressed) entries can be read, which is all that
 * torch.save produces. Everything is positioned reads; the archive is never loaded whole.
 */
import { FormatError } from '../errors.js';
import type { ByteSource } from './byte-source.js';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
/** Central directories bigger than this are refused (a torch checkpoint's is a few KB per tensor). */
const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;
/** Entries beyond this are refused (torch.save writes one per storage, plus a few; each costs a header read). */
const MAX_ENTRIES = 1 << 18;

export interface ZipEntry {
  name: string;
  /** 0 = stored; anything else is compressed and cannot be read here. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  /** Absolute offset of the entry's first data byte (after the local header). */
  dataOffset: number;
}

function u16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}
function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
/** Reads a u64; values beyond 2^53 cannot be real offsets in any file we can open. */
function u64(b: Uint8Array, at: number, path: string, what: string): number {
  const v = u32(b, at) + u32(b, at + 4) * 2 ** 32;
  if (!Number.isSafeInteger(v)) throw new FormatError(`${path}: zip ${what} ${v} is absurd`);
  return v;
}

/** A zip archive opened for positioned reads of its stored entries. */
export class ZipArchive {
  private readonly byName: Map<string, ZipEntry>;

  private constructor(
    private readonly file: ByteSource,
    /** Entries in central-directory order. */
    readonly entries: readonly ZipEntry[],
  ) {
    this.byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** The byte source's name: the path, URL or file name. */
  get path(): string {
    return this.file.name;
  }

  /** Opens the archive at `path` (Node); see openSource. */
  static async open(path: string): Promise<ZipArchive> {
    const { RandomAccessFile } = await import('./file-reader.js');
    return ZipArchive.openSource(await RandomAccessFile.open(path));
  }

  /**
   * Validates an archive (EOCD, central directory, every local header) and keeps `file` open for
   * reading its entries; `file` is closed here when it is not a readable zip.
   */
  static async openSource(file: ByteSource): Promise<ZipArchive> {
    try {
      return new ZipArchive(file, await readEntries(file));
    } catch (e) {
      await file.close().catch(() => {});
      throw e;
    }
  }

  /** The entry with this exact name, or undefined. */
  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /**
   * Reads `length` bytes starting `offset` bytes into a stored entry (the whole entry by default),
   * into a fresh buffer.
   */
  async read(name: string, offset = 0, length?: number): Promise<Uint8Array> {
    const e = this.byName.get(name);
    if (e === undefined) throw new FormatError(`${this.path}: zip has no entry ${name}`);
    if (e.method !== 0) {
      throw new FormatError(
        `${this.path}: zip entry ${name} is compressed (method ${e.method}); only stored entries can be read (torch.save stores them uncompressed)`,
      );
    }
    const len = length ?? e.uncompressedSize - offset;
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(len) ||
      offset < 0 ||
      len < 0 ||
      offset + len > e.uncompressedSize
    ) {
      throw new FormatError(
        `${this.path}: bytes [${offset}, ${offset + len}) are outside zip entry ${name} (${e.uncompressedSize} bytes)`,
      );
    }
    return this.file.read(e.dataOffset + offset, len, `zip entry ${name}`);
  }

  /** Reads a whole stored entry and checks its CRC-32 (for small entries such as a pickle). */
  async readVerified(name: string): Promise<Uint8Array> {
    const bytes = await this.read(name);
    const e = this.byName.get(name)!;
    const crc = crc32(bytes);
    if (crc !== e.crc32) {
      throw new FormatError(
        `${this.path}: zip entry ${name} is corrupt (CRC-32 ${hex(crc)}, the directory says ${hex(e.crc32)})`,
      );
    }
    return bytes;
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

let crcTable: Uint32Array | undefined;
/** CRC-32 (IEEE 802.3, as zip uses). */
export function crc32(bytes: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Directory {
  count: number;
  size: number;
  offset: number;
}

/** Finds the (ZIP64) end of central directory and returns where the central directory is. */
async function readDirectoryLocation(file: ByteSource): Promise<Directory> {
  const path = file.name;
  if (file.size < EOCD_SIZE) throw new FormatError(`${path} is not a zip archive (${file.size} bytes)`);
  const tailLen = Math.min(file.size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = file.size - tailLen;
  const tail = await file.read(tailStart, tailLen, 'the zip end of central directory');
  let at = -1;
  // The EOCD is the last record: its comment must reach exactly to the end of the file.
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (u32(tail, i) === SIG_EOCD && i + EOCD_SIZE + u16(tail, i + 20) === tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0)
    throw new FormatError(`${path} is not a zip archive or is truncated (no end of central directory record)`);
  const eocdOffset = tailStart + at;
  let count = u16(tail, at + 10);
  let size = u32(tail, at + 12);
  let offset = u32(tail, at + 16);
  if (u16(tail, at + 4) !== 0 || u16(tail, at + 6) !== 0 || u16(tail, at + 8) !== count) {
    throw new FormatError(`${path}: multi-disk zip archives are not supported`);
  }
  const locAt = at - 20;
  if (locAt >= 0 && u32(tail, locAt) === SIG_ZIP64_LOCATOR) {
    const z64Offset = u64(tail, locAt + 8, path, 'ZIP64 end of central directory offset');
    if (z64Offset + 56 > eocdOffset)
      throw new FormatError(`${path}: ZIP64 end of central directory offset ${z64Offset} is out of range`);
    const z = await file.read(z64Offset, 56, 'the ZIP64 end of central directory');
    if (u32(z, 0) !== SIG_ZIP64_EOCD)
      throw new FormatError(`${path}: no ZIP64 end of central directory record at ${z64Offset}`);
    const count64 = u64(z, 32, path, 'entry count');
    const size64 = u64(z, 40, path, 'central directory size');
    const offset64 = u64(z, 48, path, 'central directory offset');
    // The classic record must agree wherever it does not defer to ZIP64 with an all-ones value.
    if (
      (count !== 0xffff && count !== count64) ||
      (size !== 0xffffffff && size !== size64) ||
      (offset !== 0xffffffff && offset !== offset64)
    ) {
      throw new FormatError(`${path}: the zip's end of central directory records disagree (corrupt archive)`);
    }
    count = count64;
    size = size64;
    offset = offset64;
  } else if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    throw new FormatError(`${path}: zip needs a ZIP64 end of central directory record but has none (truncated?)`);
  }
  if (size > MAX_CENTRAL_DIRECTORY_BYTES)
    throw new FormatError(`${path}: zip central directory of ${size} bytes is absurd`);
  // Every entry takes at least a fixed-size record: a count the directory cannot hold is a lie.
  if (count > Math.floor(size / CENTRAL_HEADER_SIZE)) {
    throw new FormatError(
      `${path}: zip claims ${count} entries, more than its central directory of ${size} bytes can hold (corrupt)`,
    );
  }
  if (count > MAX_ENTRIES) {
    throw new FormatError(`${path}: zip has ${count} entries, more than the ${MAX_ENTRIES} a checkpoint may have`);
  }
  if (offset + size > eocdOffset) {
    throw new FormatError(
      `${path}: zip central directory [${offset}, ${offset + size}) runs past its end record at ${eocdOffset} (truncated or corrupt)`,
    );
  }
  return { count, size, offset };
}

/** Parses the central directory, then each local header, and validates every entry. */
async function readEntries(file: ByteSource): Promise<ZipEntry[]> {
  const path = file.name;
  const dir = await readDirectoryLocation(file);
  const cd = await file.read(dir.offset, dir.size, 'the zip central directory');
  const decoder = new TextDecoder('utf-8');
  const encoder = new TextEncoder();
  const entries: ZipEntry[] = [];
  const seen = new Set<string>();
  let p = 0;
  for (let i = 0; i < dir.count; i++) {
    if (p + CENTRAL_HEADER_SIZE > cd.length || u32(cd, p) !== SIG_CENTRAL) {
      throw new FormatError(
        `${path}: zip central directory entry ${i} is missing or corrupt (the directory claims ${dir.count} entries)`,
      );
    }
    const flags = u16(cd, p + 8);
    const method = u16(cd, p + 10);
    const crc = u32(cd, p + 16);
    let compressedSize = u32(cd, p + 20);
    let uncompressedSize = u32(cd, p + 24);
    const nameLen = u16(cd, p + 28);
    const extraLen = u16(cd, p + 30);
    const commentLen = u16(cd, p + 32);
    let localHeaderOffset = u32(cd, p + 42);
    const next = p + CENTRAL_HEADER_SIZE + nameLen + extraLen + commentLen;
    if (next > cd.length) throw new FormatError(`${path}: zip central directory entry ${i} runs past the directory`);
    const name = decoder.decode(cd.subarray(p + CENTRAL_HEADER_SIZE, p + CENTRAL_HEADER_SIZE + nameLen));
    // ZIP64 extended information: 8-byte values for exactly those fields that are 0xffffffff.
    if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
      const extra = cd.subarray(p + CENTRAL_HEADER_SIZE + nameLen, p + CENTRAL_HEADER_SIZE + nameLen + extraLen);
      let q = 0;
      let found = false;
      while (q + 4 <= extra.length) {
        const id = u16(extra, q);
        const len = u16(extra, q + 2);
        if (q + 4 + len > extra.length) break;
        if (id === 0x0001) {
          let r = q + 4;
          const take = (what: string) => {
            if (r + 8 > q + 4 + len)
              throw new FormatError(`${path}: zip entry ${name} has a short ZIP64 field (no ${what})`);
            const v = u64(extra, r, path, what);
            r += 8;
            return v;
          };
          if (uncompressedSize === 0xffffffff) uncompressedSize = take('uncompressed size');
          if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('local header offset');
          found = true;
          break;
        }
        q += 4 + len;
      }
      if (!found) throw new FormatError(`${path}: zip entry ${name} needs ZIP64 sizes but has no ZIP64 field`);
    }
    if (seen.has(name)) throw new FormatError(`${path}: zip has two entries named ${name}`);
    seen.add(name);
    if ((flags & 1) !== 0) throw new FormatError(`${path}: zip entry ${name} is encrypted`);
    if (method === 0 && compressedSize !== uncompressedSize) {
      throw new FormatError(
        `${path}: zip entry ${name} is stored but claims ${compressedSize} bytes compressed and ${uncompressedSize} uncompressed`,
      );
    }
    entries.push({
      name,
      method,
      flags,
      crc32: crc,
      compressedSize,
      uncompressedSize,
      localHeaderOffset,
      dataOffset: -1,
    });
    p = next;
  }

  // Local headers: the data starts after the local name and extra field, whose lengths can differ
  // from the central directory's (PyTorch pads the local extra field to align the data).
  for (const e of entries) {
    if (e.localHeaderOffset + LOCAL_HEADER_SIZE > dir.offset) {
      throw new FormatError(
        `${path}: zip entry ${e.name} has its local header at ${e.localHeaderOffset}, outside the archive's data`,
      );
    }
    // One read for the fixed header and the name, assuming the local name matches the central one.
    const expectedNameLen = encoder.encode(e.name).length;
    const headLen = Math.min(LOCAL_HEADER_SIZE + expectedNameLen, dir.offset - e.localHeaderOffset);
    const head = await file.read(e.localHeaderOffset, headLen, `the local header of zip entry ${e.name}`);
    if (u32(head, 0) !== SIG_LOCAL)
      throw new FormatError(`${path}: zip entry ${e.name} has no local header at ${e.localHeaderOffset}`);
    const nameLen = u16(head, 26);
    const extraLen = u16(head, 28);
    const localName =
      nameLen === expectedNameLen && headLen === LOCAL_HEADER_SIZE + nameLen
        ? decoder.decode(head.subarray(LOCAL_HEADER_SIZE))
        : undefined;
    if (localName !== e.name) {
      throw new FormatError(`${path}: zip entry ${e.name}'s local header names another entry (corrupt archive)`);
    }
    // Sizes in the local header are only meaningful without flag bit 3 (data descriptor follows).
    if ((u16(head, 6) & 8) === 0 && u32(head, 18) !== 0xffffffff) {
      const localCompressed = u32(head, 18);
      const localUncompressed = u32(head, 22);
      if (localCompressed !== e.compressedSize >>> 0 || localUncompressed !== e.uncompressedSize >>> 0) {
        if (localCompressed !== 0 || localUncompressed !== 0) {
          throw new FormatError(`${path}: zip entry ${e.name}: local header sizes disagree with the central directory`);
        }
      }
    }
    e.dataOffset = e.localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + extraLen;
    if (e.dataOffset + e.compressedSize > dir.offset) {
      throw new FormatError(
        `${path}: zip entry ${e.name} claims ${e.compressedSize} bytes at ${e.dataOffset}, which runs past the archive's data (ends at ${dir.offset}): truncated or lying sizes`,
      );
    }
  }

  // No two entries may share bytes.
  const byStart = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1]!;
    const cur = byStart[i]!;
    if (cur.localHeaderOffset < prev.dataOffset + prev.compressedSize) {
      throw new FormatError(`${path}: zip entries ${prev.name} and ${cur.name} overlap`);
    }
  }
  return entries;
}
