//! The raw module's allocator: power-of-two size classes with free lists, cut from the top
//! of linear memory. It replaces dlmalloc (std's allocator on wasm32) because it is about
//! 5 KB smaller, and the module's pattern (many small, short-lived allocations per call, one
//! request buffer and one answer between calls) needs no coalescing.
//!
//! Each block is a power of two of at least 16 bytes, aligned to its size (up to a page);
//! a freed block goes on its class's free list and serves the next allocation of that class.
//! Memory is never given back to the host and a class's blocks never serve another class, so
//! an instance's memory is bounded by the peak use of each class, at most twice the bytes live
//! at the worst moment per class. Hosts that feed one instance very different request sizes
//! for a long time may re-instantiate it to reclaim memory.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

/// A WebAssembly page.
const PAGE: usize = 65536;
/// The smallest block: room for the free list's link, and the alignment of every type here.
const MIN_BLOCK: usize = 16;

struct Heap {
    /// Head of each class's free list (class = log2 of the block size), 0 when empty. A free
    /// block's first word holds the next free block's address.
    free: [usize; usize::BITS as usize],
    /// Where the next new block starts; 0 before the first allocation.
    next: usize,
    /// The end of linear memory.
    end: usize,
}

/// The allocator. One instance, registered as `#[global_allocator]` in `raw`.
pub struct SizeClasses(UnsafeCell<Heap>);

// SAFETY: wasm32-unknown-unknown without the atomics feature has one thread, and the module
// imports nothing, so no allocation can start while another is running.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    /// An empty heap; it starts at the end of the memory the module was instantiated with.
    pub const fn new() -> Self {
        SizeClasses(UnsafeCell::new(Heap {
            free: [0; usize::BITS as usize],
            next: 0,
            end: 0,
        }))
    }
}

/// The block size for a layout, or `None` when no block can hold it.
fn block_size(layout: Layout) -> Option<usize> {
    if layout.align() > PAGE {
        return None;
    }
    layout
        .size()
        .max(layout.align())
        .max(MIN_BLOCK)
        .checked_next_power_of_two()
}

impl Heap {
    fn push(&mut self, block: usize, size: usize) {
        let class = size.trailing_zeros() as usize;
        // SAFETY: `block` is a block of `size` >= 16 bytes, 16-aligned, that nothing else
        // uses; its first word becomes the link.
        unsafe { ptr::write(block as *mut usize, self.free[class]) };
        self.free[class] = block;
    }

    fn pop(&mut self, size: usize) -> Option<usize> {
        let class = size.trailing_zeros() as usize;
        let block = self.free[class];
        if block == 0 {
            return None;
        }
        // SAFETY: a block on a free list holds the next one's address in its first word.
        self.free[class] = unsafe { ptr::read(block as *const usize) };
        Some(block)
    }

    /// A new block of `size` bytes from the top of the heap, growing memory when needed.
    fn cut(&mut self, size: usize) -> Option<usize> {
        if self.next == 0 {
            self.end = wasm32::memory_size(0) * PAGE;
            self.next = self.end;
        }
        let align = size.min(PAGE);
        // The gap up to the alignment is cut into the largest aligned blocks that fit, which
        // go on their free lists rather than being lost.
        while self.next % align != 0 {
            let gap = 1 << self.next.trailing_zeros();
            if self.next + gap > self.end {
                break;
            }
            self.push(self.next, gap);
            self.next += gap;
        }
        let start = self.next.next_multiple_of(align);
        let stop = start.checked_add(size)?;
        if stop > self.end {
            let pages = (stop - self.end).div_ceil(PAGE);
            // Checked: 4 GiB of memory would not fit in a 32-bit `end`.
            let end = self.end.checked_add(pages.checked_mul(PAGE)?)?;
            if wasm32::memory_grow(0, pages) == usize::MAX {
                return None;
            }
            self.end = end;
        }
        self.next = stop;
        Some(start)
    }
}

// SAFETY: blocks are disjoint (each is cut once from the top and only reused after it was
// freed), at least as large as the layout asks and aligned to it (see `block_size`).
unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see `Sync` above: no other reference to the heap is live.
        let heap = unsafe { &mut *self.0.get() };
        block_size(layout)
            .and_then(|size| heap.pop(size).or_else(|| heap.cut(size)))
            .map_or(ptr::null_mut(), |block| block as *mut u8)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let heap = unsafe { &mut *self.0.get() };
        if let Some(size) = block_size(layout) {
            heap.push(block as usize, size);
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A vector that grows within its block keeps it: no copy.
        let same = Layout::from_size_align(new_size, layout.align())
            .ok()
            .and_then(block_size)
            .is_some_and(|size| Some(size) == block_size(layout));
        if same {
            return block;
        }
        // SAFETY: the caller's contract for `realloc` is `GlobalAlloc`'s; this is its default.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new_block = self.alloc(new_layout);
            if !new_block.is_null() {
                ptr::copy_nonoverlapping(block, new_block, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new_block
        }
    }
}
