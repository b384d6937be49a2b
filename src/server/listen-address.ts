/** Where `mpt serve` and `mpt web` listen unless told otherwise: this machine only, on the usual dev port. */
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
