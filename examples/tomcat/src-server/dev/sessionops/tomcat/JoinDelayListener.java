package dev.sessionops.tomcat;

import org.apache.catalina.Cluster;
import org.apache.catalina.Container;
import org.apache.catalina.Context;
import org.apache.catalina.Lifecycle;
import org.apache.catalina.LifecycleEvent;
import org.apache.catalina.LifecycleListener;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * Holds a web application's start (and so its DeltaManager's request for every session)
 * until the running servers have had time to add this one as a member.
 *
 * The cluster's receiver listens before the web application starts, but the running
 * servers add a new member only at their next heartbeat, once they see it answer. A
 * session change a running server makes after the copy was taken and before it knows the
 * new server never reaches the new server. Waiting a few heartbeats closes that window.
 * Declared in the web application's META-INF/context.xml; the class lives in
 * CATALINA_BASE/lib.
 */
public class JoinDelayListener implements LifecycleListener {
    private static final Log log = LogFactory.getLog(JoinDelayListener.class);

    private long delayMillis = 3000;

    public void setDelayMillis(long delayMillis) {
        this.delayMillis = delayMillis;
    }

    @Override
    public void lifecycleEvent(LifecycleEvent event) {
        if (!Lifecycle.BEFORE_START_EVENT.equals(event.getType()) || !(event.getLifecycle() instanceof Context)) {
            return;
        }
        Context ctx = (Context) event.getLifecycle();
        Cluster cluster = ctx.getCluster();
        for (Container c = ctx.getParent(); cluster == null && c != null; c = c.getParent()) {
            cluster = c.getCluster();
        }
        if (cluster == null || delayMillis <= 0) {
            return;
        }
        log.info("waiting " + delayMillis + " ms for the running servers to add this one before copying their sessions");
        try {
            Thread.sleep(delayMillis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
