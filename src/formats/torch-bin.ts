/**
 * PyTorch `torch.save` checkpoints (`pytorch_model*.bin`, PyTorch ≥ 1.6 zip format): a zip holding
 * `<stem>/data.pkl` (a pickled state dict whose tensors point at storages by persistent id) and one
 * stored entry `<stem>/data/<key>` of raw little-endian bytes per storage. The pickle is run by our
 * whitelisting VM (nothing is executed); tensor bytes are read lazily from the zip.
 */
import { FormatError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { FLOAT_DTYPE_BYTES, shapeElements } from './dtypes.js';
import { BASIC_GLOBALS, PickleGlobal, PickleTuple, unpickle, type PickleGlobalImpl } from './pickle.js';
import type { DType, TensorInfo, TensorSource } from './tensor-source.js';
import { ZipArchive } from './zip.js';

/** A pickle bigger than this is refused (mpt-7b's is ~20 KB; the limit only stops absurd inputs). */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

/** torch storage class → [torch dtype name, element size, our dtype if we load it]. */
const STORAGE_TYPES: Readonly<Record<string, readonly [string, number, DType | undefined]>> = {
  FloatStorage: ['float32', 4, 'f32'],
  HalfStorage: ['float16', 2, 'f16'],
  BFloat16Storage: ['bfloat16', 2, 'bf16'],
  DoubleStorage: ['float64', 8, undefined],
  LongStorage: ['int64', 8, undefined],
  IntStorage: ['int32', 4, undefined],
  ShortStorage: ['int16', 2, undefined],
  CharStorage: ['int8', 1, undefined],
  ByteStorage: ['uint8', 1, undefined],
  BoolStorage: ['bool', 1, undefined],
};

/** A storage the pickle refers to: `<stem>/data/<key>`, `numel` elements of `torchDtype`. */
interface StorageRef {
  key: string;
  torchDtype: string;
  elementSize: number;
  dtype: DType | undefined;
  numel: number;
}

/** What `_rebuild_tensor_v2` describes: a strided view into a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

/** Wraps a StorageRef so that the pickle VM's values can be told apart by class. */
class StorageRefBox {
  constructor(readonly ref: StorageRef) {}
}

function intList(v: unknown, what: string, where: string): number[] {
  const items = v instanceof PickleTuple ? v.items : undefined;
  if (items === undefined || !items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new FormatError(`${where}: tensor ${what} is not a tuple of non-negative integers`);
  }
  return items as number[];
}

function rebuildTensor(args: readonly unknown[], where: string): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRefBox)) throw new FormatError(`${where}: tensor storage is not a storage reference`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new FormatError(`${where}: tensor storage offset is not a non-negative integer`);
  }
  return new TensorRef(storage.ref, offset, intList(size, 'size', where), intList(stride, 'stride', where));
}

/** The globals a state-dict pickle may name: harmless stdlib ones, tensor rebuilders, storage types. */
const TORCH_GLOBALS: ReadonlyMap<string, PickleGlobalImpl> = new Map<string, PickleGlobalImpl>([
  ...BASIC_GLOBALS,
  ['torch._utils._rebuild_tensor_v2', { call: rebuildTensor }],
  [
    'torch._utils._rebuild_parameter',
    {
      call(args, where) {
        if (!(args[0] instanceof TensorRef))
          throw new FormatError(`${where}: _rebuild_parameter of something that is not a tensor`);
        return args[0];
      },
    },
  ],
  [
    'torch._utils._rebuild_parameter_with_state',
    {
      call(args, where) {
        if (!(args[0] instanceof TensorRef))
          throw new FormatError(`${where}: _rebuild_parameter_with_state of something that is not a tensor`);
        return args[0];
      },
    },
  ],
  // Storage classes appear as values inside persistent ids; they are never called.
  ...Object.keys(STORAGE_TYPES).map((n): [string, PickleGlobalImpl] => [`torch.${n}`, {}]),
]);

/** A `torch.save` zip checkpoint opened for lazy reading. */
export interface TorchBinSource extends TensorSource {
  /** The byte source's name: the path, URL or file name. */
  readonly path: string;
}

interface Located {
  info: TensorInfo;
  entry: string;
  byteOffset: number;
}

/** Opens the `torch.save` checkpoint at `path` (Node); see openTorchBinSource. */
export async function openTorchBin(path: string): Promise<TorchBinSource> {
  const { RandomAccessFile } = await import('./file-reader.js');
  return openTorchBinSource(await RandomAccessFile.open(path));
}

/**
 * Opens a `torch.save` zip checkpoint whose top-level object is a state dict of tensors; `file`
 * is the returned source's to close (and is closed here when it is refused).
 */
export async function openTorchBinSource(file: ByteSource): Promise<TorchBinSource> {
  const path = file.name;
  const zip = await openZipOrExplain(file);
  try {
    const tensors = await readStateDict(zip);
    return {
      path,
      list: () => [...tensors.values()].map((t) => ({ ...t.info, shape: t.info.shape.slice() })),
      info: (name) => {
        const t = tensors.get(name);
        return t && { ...t.info, shape: t.info.shape.slice() };
      },
      read: async (name) => {
        const t = tensors.get(name);
        if (t === undefined) throw new FormatError(`${path} has no tensor named ${name}`);
        return zip.read(t.entry, t.byteOffset, t.info.byteLength);
      },
      close: () => zip.close(),
    };
  } catch (e) {
    await zip.close().catch(() => {});
    throw e;
  }
}

async function openZipOrExplain(file: ByteSource): Promise<ZipArchive> {
  // The pre-1.6 format is a bare pickle stream (protocol 2 to 5); say so rather than "not a zip".
  const head = file.size >= 2 ? await file.read(0, 2, 'the first bytes').catch(() => undefined) : undefined;
  if (head !== undefined && head[0] === 0x80 && head[1]! <= 5) {
    await file.close().catch(() => {});
    throw new FormatError(
      `${file.name} uses PyTorch's legacy (pre-1.6) serialization, which is not supported: re-save it with a newer torch.save or convert it to safetensors`,
    );
  }
  return ZipArchive.openSource(file);
}

async function readStateDict(zip: ZipArchive): Promise<Map<string, Located>> {
  const path = zip.path;
  const pickles = zip.entries.filter((e) => e.name.endsWith('/data.pkl') && !e.name.slice(0, -9).includes('/'));
  if (pickles.length !== 1) {
    throw new FormatError(
      pickles.length === 0
        ? `${path} is a zip but not a torch.save checkpoint (no <name>/data.pkl entry)`
        : `${path} holds ${pickles.length} data.pkl entries; expected one`,
    );
  }
  const pkl = pickles[0]!;
  const stem = pkl.name.slice(0, -'/data.pkl'.length);
  const byteorder = zip.entry(`${stem}/byteorder`);
  if (byteorder !== undefined) {
    const order = new TextDecoder().decode(await zip.read(byteorder.name)).trim();
    if (order !== 'little')
      throw new FormatError(`${path} was saved with ${order}-endian storages; only little-endian is supported`);
  }
  if (pkl.uncompressedSize > MAX_PICKLE_BYTES)
    throw new FormatError(`${path}: ${pkl.name} is ${pkl.uncompressedSize} bytes, which is absurd for a state dict`);
  const pickleBytes = await zip.readVerified(pkl.name);

  const storages = new Map<string, StorageRef>();
  const root = unpickle(pickleBytes, {
    globals: TORCH_GLOBALS,
    what: `${path}: ${pkl.name}`,
    persistentLoad(pid, where) {
      const items = pid instanceof PickleTuple ? pid.items : undefined;
      if (items === undefined || items.length !== 5 || items[0] !== 'storage') {
        throw new FormatError(`${where}: unsupported persistent id (expected ('storage', type, key, location, numel))`);
      }
      const [, type, key, , numel] = items;
      if (!(type instanceof PickleGlobal) || type.module !== 'torch' || STORAGE_TYPES[type.name] === undefined) {
        throw new FormatError(`${where}: storage type is not a torch storage class`);
      }
      if (typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
        throw new FormatError(`${where}: malformed storage reference`);
      }
      const [torchDtype, elementSize, dtype] = STORAGE_TYPES[type.name]!;
      const known = storages.get(key);
      if (known !== undefined) {
        if (known.torchDtype !== torchDtype || known.numel !== numel) {
          throw new FormatError(
            `${where}: storage ${key} is referred to as both ${known.torchDtype}[${known.numel}] and ${torchDtype}[${numel}]`,
          );
        }
        return new StorageRefBox(known);
      }
      const ref: StorageRef = { key, torchDtype, elementSize, dtype, numel };
      storages.set(key, ref);
      return new StorageRefBox(ref);
    },
  });

  if (!(root instanceof Map))
    throw new FormatError(`${path}: the pickled object is not a state dict (a dict of tensors)`);
  const out = new Map<string, Located>();
  for (const [name, value] of root) {
    if (typeof name !== 'string') throw new FormatError(`${path}: state dict has a key that is not a string`);
    if (!(value instanceof TensorRef)) throw new FormatError(`${path}: state dict entry ${name} is not a tensor`);
    out.set(name, locate(zip, stem, name, value));
  }
  return out;
}

/** Checks a tensor view (dtype, contiguity, bounds) and finds its bytes in the zip. */
function locate(zip: ZipArchive, stem: string, name: string, t: TensorRef): Located {
  const where = `${zip.path}: tensor ${name}`;
  const s = t.storage;
  if (s.dtype === undefined) {
    throw new FormatError(`${where} is ${s.torchDtype}; only float32, float16 and bfloat16 tensors are supported`);
  }
  if (t.size.length !== t.stride.length) throw new FormatError(`${where}: size and stride have different ranks`);
  const numel = shapeElements(t.size);
  // Contiguous (row-major) strides; a dimension of extent 1 may carry any stride.
  let expected = 1;
  for (let d = t.size.length - 1; d >= 0; d--) {
    if (numel !== 0 && t.size[d] !== 1 && t.stride[d] !== expected) {
      throw new FormatError(
        `${where} is not contiguous (size [${t.size.join(', ')}], stride [${t.stride.join(', ')}]); save it with .contiguous() or as safetensors`,
      );
    }
    expected *= t.size[d]!;
  }
  if (t.storageOffset + numel > s.numel) {
    throw new FormatError(
      `${where}: elements [${t.storageOffset}, ${t.storageOffset + numel}) lie outside its storage of ${s.numel}`,
    );
  }
  const entry = `${stem}/data/${s.key}`;
  const e = zip.entry(entry);
  if (e === undefined) throw new FormatError(`${where}: its storage ${entry} is missing from the archive`);
  if (e.uncompressedSize !== s.numel * s.elementSize) {
    throw new FormatError(
      `${where}: storage ${entry} has ${e.uncompressedSize} bytes, but the pickle says ${s.numel} × ${s.elementSize}`,
    );
  }
  const byteLength = numel * FLOAT_DTYPE_BYTES[s.dtype]!;
  return {
    info: { name, dtype: s.dtype, shape: t.size.slice(), byteLength },
    entry,
    byteOffset: t.storageOffset * s.elementSize,
  };
}
