import {open} from 'node:fs/promises'

/** What a superblock says a partition holds; 'unknown' when no magic we know is there. */
export type FilesystemType = 'ext2/3/4' | 'xfs' | 'btrfs' | 'vfat' | 'swap' | 'lvm2' | 'luks' | 'squashfs' | 'unknown'

/** Each filesystem's magic: bytes at an offset from the start of the filesystem. */
const MAGICS: Array<{type: FilesystemType; at: number; bytes: Buffer}> = [
  {type: 'ext2/3/4', at: 1024 + 56, bytes: Buffer.from([0x53, 0xef])},
  {type: 'xfs', at: 0, bytes: Buffer.from('XFSB')},
  {type: 'btrfs', at: 65536 + 64, bytes: Buffer.from('_BHRfS_M')},
  {type: 'luks', at: 0, bytes: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe])},
  {type: 'squashfs', at: 0, bytes: Buffer.from('hsqs')},
  {type: 'lvm2', at: 512 + 24, bytes: Buffer.from('LVM2 001')},
  {type: 'swap', at: 4096 - 10, bytes: Buffer.from('SWAPSPACE2')},
  {type: 'vfat', at: 82, bytes: Buffer.from('FAT32   ')},
  {type: 'vfat', at: 54, bytes: Buffer.from('FAT1')},
]

/** Reads the magic numbers of the filesystem that starts at `offset` bytes into `file`. */
export async function filesystemType(file: string, offset: number): Promise<FilesystemType> {
  const fh = await open(file, 'r')
  try {
    const head = Buffer.alloc(65536 + 4096)
    const {bytesRead} = await fh.read(head, 0, head.length, offset)
    for (const m of MAGICS) {
      if (m.at + m.bytes.length <= bytesRead && head.subarray(m.at, m.at + m.bytes.length).equals(m.bytes)) return m.type
    }
    return 'unknown'
  } finally {
    await fh.close()
  }
}
