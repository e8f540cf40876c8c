package taskpool.operaton;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Operaton as its users run it: the Spring Boot starter with the REST API at /engine-rest,
 * configured entirely by command-line properties (scripts/operaton.sh). No engine code changes.
 */
@SpringBootApplication
public class OperatonHarness {
    public static void main(String[] args) {
        SpringApplication.run(OperatonHarness.class, args);
    }
}
