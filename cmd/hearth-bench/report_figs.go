package main

// rssFigs is VmRSS and its RssAnon part in MiB, as a row's figures: the
// total a user sees, and the memory the daemon allocated (heap, stacks)
// apart from file pages the kernel can drop (proc.go's rssDetail says the
// same in words). Nil if /proc cannot be read; the row's text says why.
func rssFigs(pid int) []num {
	rss, err1 := memKB(pid, "VmRSS")
	anon, err2 := memKB(pid, "RssAnon")
	if err1 != nil || err2 != nil {
		return nil
	}
	return figs(fig("RSS", mibF(rss), "MiB"), fig("anon", mibF(anon), "MiB"))
}
